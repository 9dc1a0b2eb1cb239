"""Imports every built-in encoder module so that each registers itself."""

from aar.models import lm_encoders, onnx_l3, precomputed, sentence  # noqa: F401
