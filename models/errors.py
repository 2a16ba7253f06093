"""The model layer's errors, in a leaf module: naming them must not import torch or ORT."""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint file that is missing, unreadable or not a swarmdrive model."""


class ModelFileError(Exception):
    """A model file that is missing, not ONNX, or not a swarmdrive export."""


class ExportError(Exception):
    """The exported model failed a check (ONNX checker or parity)."""
