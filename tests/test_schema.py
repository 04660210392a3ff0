"""The decision tree against hand-checked facts from the Kaggle description (DOMAIN.md)."""

from __future__ import annotations

import numpy as np
import pytest

from galaxyzoo_cli.core.schema import (
    COLUMNS,
    CSV_HEADER,
    N_OUTPUTS,
    QUESTIONS,
    check_consistency,
    expected_sums,
    question,
    reached,
)

# (question, slice start, stop, parent column name or None), from the table in DOMAIN.md
TABLE = [
    (1, 0, 3, None),
    (2, 3, 5, "Class1.2"),
    (3, 5, 7, "Class2.2"),
    (4, 7, 9, "Class2.2"),
    (5, 9, 13, "Class2.2"),
    (6, 13, 15, None),
    (7, 15, 18, "Class1.1"),
    (8, 18, 25, "Class6.1"),
    (9, 25, 28, "Class2.1"),
    (10, 28, 31, "Class4.1"),
    (11, 31, 37, "Class4.1"),
]


def test_columns_in_kaggle_order() -> None:
    assert N_OUTPUTS == 37
    assert COLUMNS[:4] == ("Class1.1", "Class1.2", "Class1.3", "Class2.1")
    assert COLUMNS[13:15] == ("Class6.1", "Class6.2")
    assert COLUMNS[-1] == "Class11.6"
    assert CSV_HEADER[0] == "GalaxyID" and len(CSV_HEADER) == 38
    assert len(set(COLUMNS)) == 37


@pytest.mark.parametrize(("number", "start", "stop", "parent"), TABLE)
def test_slices_and_dependencies(number: int, start: int, stop: int, parent: str | None) -> None:
    q = question(number)
    assert (q.slice.start, q.slice.stop) == (start, stop)
    assert list(q.columns) == list(COLUMNS[start:stop])
    if parent is None:
        assert q.parent_column is None
    else:
        assert q.parent_column is not None and COLUMNS[q.parent_column] == parent


def test_answers_named() -> None:
    assert question(1).answers == ("smooth", "features or disk", "star or artifact")
    assert len(question(8).answers) == 7 and question(8).answers[5] == "merger"
    assert sum(len(q.answers) for q in QUESTIONS) == 37


def _consistent_row() -> np.ndarray:
    v = np.zeros(37)
    v[0:3] = [0.3, 0.6, 0.1]  # Q1
    v[3:5] = [0.2, 0.4]  # Q2 sums to A1.2 = 0.6
    v[5:7] = [0.1, 0.3]  # Q3 sums to A2.2 = 0.4
    v[7:9] = [0.25, 0.15]  # Q4 sums to A2.2
    v[9:13] = [0.1, 0.1, 0.1, 0.1]  # Q5 sums to A2.2
    v[13:15] = [0.2, 0.8]  # Q6 sums to 1
    v[15:18] = [0.1, 0.1, 0.1]  # Q7 sums to A1.1 = 0.3
    v[18:25] = [0.05, 0.05, 0.0, 0.0, 0.0, 0.1, 0.0]  # Q8 sums to A6.1 = 0.2
    v[25:28] = [0.1, 0.05, 0.05]  # Q9 sums to A2.1 = 0.2
    v[28:31] = [0.05, 0.1, 0.1]  # Q10 sums to A4.1 = 0.25
    v[31:37] = [0.0, 0.15, 0.05, 0.0, 0.0, 0.05]  # Q11 sums to A4.1
    return v


def test_consistency_on_consistent_row() -> None:
    report = check_consistency(_consistent_row()[None])
    assert report.ok and report.n_checked == 11
    assert report.worst_residual < 1e-12


def test_consistency_reports_worst_violation() -> None:
    rows = np.stack([_consistent_row(), _consistent_row(), _consistent_row()])
    rows[1, 29] += 0.01  # Q10 off by 0.01 in row 1
    rows[2, 20] += 0.2  # Q8 off by 0.2 in row 2: the worst
    report = check_consistency(rows)
    assert not report.ok and report.n_violations == 2
    assert report.worst_row == 2 and report.worst_question == 8
    assert report.worst_residual == pytest.approx(0.2)
    text = report.describe(np.array([100008, 100023, 100053]))
    assert "GalaxyID 100053" in text and "Q8" in text and "Class6.1" in text


def test_consistency_skips_missing_cells() -> None:
    row = _consistent_row()
    row[5:13] = np.nan  # Q3-Q5 unknown, like the real partial catalogue...
    report = check_consistency(row[None])
    assert report.ok and report.n_checked == 6  # ...so Q10, Q11 (parent Class4.1) are unknown too
    nothing = check_consistency(np.full((2, 37), np.nan))
    assert nothing.n_checked == 0 and nothing.ok and "nothing to check" in nothing.describe()


def test_expected_sums_and_reached() -> None:
    row = _consistent_row()
    sums = expected_sums(row)
    assert sums.shape == (1, 11)
    assert sums[0, 0] == 1 and sums[0, 5] == 1
    assert sums[0, 1] == pytest.approx(0.6) and sums[0, 10] == pytest.approx(0.25)
    row[7] = 0.0  # nobody said "spiral": Q10 and Q11 not reached
    assert reached(row)[0].tolist() == [True] * 9 + [False, False]
