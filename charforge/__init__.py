"""charforge: keep a character's CG and BGM in step with how it feels."""

__version__ = "0.1.0"
