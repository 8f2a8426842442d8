"""Models: one interface (``features`` + ``head``), inflated ResNets, torchvision video models, checkpoints."""

from vidviz.models.checkpoint import ARCHS, build_model, load_checkpoint, read_checkpoint, save_checkpoint
from vidviz.models.resnet3d import VideoClassifier, i3d_resnet50, i3d_resnet_tiny

__all__ = ["ARCHS", "VideoClassifier", "build_model", "i3d_resnet50", "i3d_resnet_tiny", "load_checkpoint",
           "read_checkpoint", "save_checkpoint"]
