"""galaxyzoo-cli."""

from galaxyzoo_cli._version import __version__

__all__ = ["__version__"]
