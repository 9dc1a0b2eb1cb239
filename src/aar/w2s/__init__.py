"""Weak-to-strong core: heads, metrics, baselines, scoring, the method context and the LoRA
student (runs and sweeps of methods are in ``aar.experiments``)."""
