"""Data layer: decoding and sampling clips, dataset readers, the synthetic generator."""

import os

# Keep OpenCV/FFmpeg quiet: vidviz reports decoding problems itself, in one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
