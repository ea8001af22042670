"""The package version, in a module of its own so that code inside charforge can read it without
importing the package root (which exports the high-level API)."""

__version__ = "0.1.0"
