"""Text encoders: registry, built-in models, feature cache."""
