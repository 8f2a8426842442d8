"""Explainers (Grad-CAM family), temporal analysis and saliency-quality metrics."""
