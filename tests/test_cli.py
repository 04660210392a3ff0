"""The app's one error boundary, --json failures, and a light `import galaxyzoo_cli.cli`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from galaxyzoo_cli.cli import app

runner = CliRunner()


def test_cli_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, galaxyzoo_cli.cli; "
        "print(sorted(m for m in ('torch', 'timm', 'matplotlib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_domain_error_with_json_prints_one_error_object(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--data-dir", str(tmp_path / "nowhere"), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["exit_code"] == 2 and "data folder not found" in report["error"]
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr


def test_usage_error_with_json_prints_one_error_object(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--head", "softmax", "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["exit_code"] == 2 and "softmax" in report["error"]


def test_debug_lets_the_traceback_through(tmp_path: Path) -> None:
    args = ["check", "--data-dir", str(tmp_path / "nowhere")]
    assert "Traceback" not in runner.invoke(app, args).stderr
    result = runner.invoke(app, ["--debug", *args])
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_train_help_lists_the_choices() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for choices in ("tree", "sigmoid", "mse", "adamw", "cosine", "last"):
        assert choices in result.output
