"""The command line: thin Typer commands over the library (``galaxyzoo``), one error boundary.

:mod:`galaxyzoo_cli.cli.app` holds the app and what its commands share; each other module adds
commands to it.

Layer rule: the top layer, it may import from every other; at import time only torch-free
modules (``core``), the library's modules inside the commands, so ``--help`` stays fast.
"""

import importlib

from galaxyzoo_cli.cli.app import app, main

# They add their commands, in this order in --help.
for _module in ("data", "train", "finetune", "results"):
    importlib.import_module(f"galaxyzoo_cli.cli.{_module}")

__all__ = ["app", "main"]
