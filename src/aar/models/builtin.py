"""Imports every built-in encoder module so that each registers itself."""

from aar.models import onnx_l3, precomputed, sentence, smollm  # noqa: F401
