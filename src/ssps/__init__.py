"""ssps: self-supervised speaker verification with Self-Supervised Positive Sampling."""

__version__ = "0.1.0"
