"""omnirec: shared core (settings, errors, runtime helpers and the `omnirec` command)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
