"""aar: Automated Alignment Researchers for weak-to-strong supervision."""

__version__ = "0.1.0"
