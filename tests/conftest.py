"""Shared fixtures: tiny synthetic data sets written by the real generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from galaxyzoo_cli.synthetic import generate

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch is imported


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Never touch the user's real image cache."""
    monkeypatch.setenv("GALAXYZOO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 labelled + 24 test synthetic galaxies (read-only for tests: copy before changing)."""
    data_dir = tmp_path_factory.mktemp("synthetic") / "data"
    generate(data_dir=data_dir, n_train=120, n_test=24, seed=7)
    return data_dir
