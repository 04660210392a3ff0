"""galaxyzoo-cli.

``load_input(path, spec)`` turns an image file (JPEG, PNG, FITS) into the input of a model or of
its export: the decode that training, evaluation, prediction and docs/deploy.md share.
"""

from galaxyzoo_cli._version import __version__
from galaxyzoo_cli.core.settings import FitsOptions
from galaxyzoo_cli.data.images import InputSpec, load_input

__all__ = ["FitsOptions", "InputSpec", "__version__", "load_input"]
