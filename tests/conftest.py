"""Shared fixtures: tiny synthetic data sets written by the real generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from galaxyzoo_cli.data.synthetic import generate

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


PARTIAL_UNLABELLED = (3, 4, 5, 9, 10, 11)
"""The questions without labels in ``partial_data``, as in the real gz5000 sample."""


@pytest.fixture(scope="session")
def partial_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``synthetic_data`` (120 labelled + 24 test galaxies), but labelled like the real
    gz5000 sample: only Class1, 2, 6, 7 and 8 (17 of the 37 columns); the 20 cells of Q3, Q4,
    Q5, Q9, Q10 and Q11 are empty in every row. Read-only for tests: copy before changing."""
    import csv

    from galaxyzoo_cli.core.schema import question

    data_dir = tmp_path_factory.mktemp("partial") / "data"
    generate(data_dir=data_dir, n_train=120, n_test=24, seed=11)
    labels = data_dir / "training_solutions_rev1.csv"
    with labels.open(newline="") as f:
        rows = list(csv.reader(f))
    blank = {c for n in PARTIAL_UNLABELLED for c in question(n).columns}
    cols = [i for i, name in enumerate(rows[0]) if name in blank]
    assert len(cols) == 20
    for row in rows[1:]:
        for i in cols:
            row[i] = ""
    with labels.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return data_dir
