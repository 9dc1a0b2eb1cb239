"""Weak-to-strong core: heads, metrics, baselines, the method context and the runner."""
