"""ssps: self-supervised speaker verification with Self-Supervised Positive Sampling."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from ssps import SpeakerEncoder` without importing torch for `import ssps`.
    if name == "SpeakerEncoder":
        from .inference import SpeakerEncoder

        return SpeakerEncoder
    raise AttributeError(name)
