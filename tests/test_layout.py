"""The package's layers: core → data → models → training → inference → outputs → cli. A module
imports only from its own layer or lower ones (every import, those inside functions and under
``TYPE_CHECKING`` included), and the core imports no heavy library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import galaxyzoo_cli

PACKAGE = Path(galaxyzoo_cli.__file__).parent
LAYERS = ("core", "data", "models", "training", "inference", "outputs", "cli")
HEAVY = ("torch", "torchvision", "timm", "matplotlib", "pandas")
TOP_LEVEL = {"__init__", "__main__", "_version"}
"""The only modules outside the layers' subpackages."""


def layer_of(module: str) -> int:
    """The layer of a module of the package, by its dotted name. ``_version`` sits with the core;
    the package's own ``__init__`` (``load_input``, ``InputSpec``, ``FitsOptions``) with the data;
    ``__main__`` with the CLI."""
    parts = module.split(".")
    assert parts[0] == "galaxyzoo_cli", module
    if len(parts) == 1:
        return LAYERS.index("data")
    if parts[1] == "_version":
        return LAYERS.index("core")
    if parts[1] == "__main__":
        return LAYERS.index("cli")
    return LAYERS.index(parts[1])


def imported(module: str, source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of the package's modules in ``source``, at any depth."""
    package = module.rsplit(".", 1)[0] if not module.endswith("__init__") else module
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "galaxyzoo_cli":  # from galaxyzoo_cli import x: x is the module
                found += [(node.lineno, f"galaxyzoo_cli.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, name))
    return found


def violations(module: str, source: str) -> list[str]:
    """Each import of ``source`` (the module ``module``) from a higher layer."""
    own = layer_of(module)
    return [
        f"{module}:{line} imports {name} ({LAYERS[layer_of(name)]} is above {LAYERS[own]})"
        for line, name in imported(module, source)
        if name.split(".")[0] == "galaxyzoo_cli" and layer_of(name) > own
    ]


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("galaxyzoo_cli", *parts)).removesuffix(".__init__")
        out.append((name, path))
    return out


def test_every_module_is_in_a_layer() -> None:
    flat = [p.stem for p in PACKAGE.glob("*.py") if p.stem not in TOP_LEVEL]
    assert flat == [], f"modules outside the layers' subpackages: {flat}"
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert folders == sorted(LAYERS)
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc, f"galaxyzoo_cli/{layer}/__init__.py: say what it holds and may import"


def test_no_module_imports_from_a_higher_layer() -> None:
    found = [v for name, path in modules() for v in violations(name, path.read_text())]
    assert found == []


def test_the_core_imports_no_heavy_library() -> None:
    found = [
        f"{name}:{line} imports {imp}"
        for name, path in modules()
        if name.startswith("galaxyzoo_cli.core")
        for line, imp in imported(name, path.read_text())
        if imp.split(".")[0] in HEAVY
    ]
    assert found == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("galaxyzoo_cli.data.x", "def f():\n    from galaxyzoo_cli.training import loop\n", 1),
        ("galaxyzoo_cli.core.x", "from galaxyzoo_cli import models\n", 1),
        ("galaxyzoo_cli.core.x", "if X:\n    import galaxyzoo_cli.outputs.drawing\n", 1),
        ("galaxyzoo_cli.models.x", "from ..training import loop\n", 1),
        ("galaxyzoo_cli.outputs.x", "from galaxyzoo_cli.inference.loading import load_run\n", 0),
        ("galaxyzoo_cli.core.x", "from galaxyzoo_cli._version import __version__\n", 0),
        ("galaxyzoo_cli.core.x", "import torch\n", 0),
    ],
)
def test_the_rule_catches_an_import_from_above(module: str, source: str, expected: int) -> None:
    assert len(violations(module, source)) == expected
