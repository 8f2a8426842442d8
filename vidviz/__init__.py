"""vidviz: explore what video classifiers look at, frame by frame (Grad-CAM for 3D CNNs)."""

__version__ = "0.1.0"
