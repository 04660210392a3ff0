"""Property-based tests (hypothesis): the labels reader, the transform specs, the tree checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.schema import CSV_HEADER, QUESTIONS, check_consistency
from galaxyzoo_cli.data.catalogue import read_labels, write_labels
from galaxyzoo_cli.data.images import InputSpec, parse_transform
from galaxyzoo_cli.models.heads import tree_normalise

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

cell = st.one_of(st.floats(0, 1), st.just(math.nan))


@SETTINGS
@given(
    ids=st.lists(st.integers(1, 10**9), min_size=1, max_size=20, unique=True),
    data=st.data(),
)
def test_labels_round_trip(tmp_path: Path, ids: list[int], data: st.DataObject) -> None:
    values = np.array(
        [data.draw(st.lists(cell, min_size=37, max_size=37)) for _ in ids], dtype=np.float64
    )
    path = tmp_path / "labels.csv"
    write_labels(path, np.array(ids), values)
    table = read_labels(path)
    assert table.ids.tolist() == ids
    np.testing.assert_allclose(table.values, values.astype(np.float32), rtol=1e-6, atol=1e-7)


@SETTINGS
@given(text=st.text(max_size=400))
def test_any_text_is_labels_or_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(",".join(CSV_HEADER) + "\n" + text, encoding="utf-8")
    try:
        table = read_labels(path)
    except BadInputError as e:
        assert str(path) in str(e)
    else:
        ok = np.isnan(table.values) | ((table.values >= 0) & (table.values <= 1))
        assert ok.all() and len(set(table.ids.tolist())) == len(table.ids)


@SETTINGS
@given(
    value=st.one_of(
        st.floats(allow_nan=False).filter(lambda v: not 0 <= v <= 1),
        st.text(alphabet="abcxyz-+e", min_size=1, max_size=5).filter(lambda s: not _parses(s)),
    ),
    row=st.integers(0, 4),
    column=st.integers(0, 36),
)
def test_a_bad_cell_is_named(tmp_path: Path, value: object, row: int, column: int) -> None:
    values = np.full((5, 37), 0.5)
    path = tmp_path / "labels.csv"
    write_labels(path, np.arange(100000, 100005), values)
    lines = path.read_text().splitlines()
    cells = lines[row + 1].split(",")
    cells[column + 1] = str(value)
    lines[row + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    try:
        read_labels(path)
    except BadInputError as e:
        assert f"line {row + 2}, column {CSV_HEADER[column + 1]}" in str(e)
    else:
        raise AssertionError(f"{value!r} was accepted")


def _parses(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


@SETTINGS
@given(
    gray=st.booleans(),
    crop=st.one_of(st.none(), st.integers(8, 424)),
    size=st.one_of(st.none(), st.integers(8, 1024)),
    sep=st.sampled_from([",", "+", " , ", " + "]),
)
def test_valid_transform_specs_parse_to_what_they_say(
    gray: bool, crop: int | None, size: int | None, sep: str
) -> None:
    tokens = ["gray" if gray else "rgb"]
    tokens += [f"crop={crop}"] if crop is not None else []
    tokens += [f"size={size}"] if size is not None else []
    assert parse_transform(sep.join(tokens)) == InputSpec(1 if gray else 3, crop, size)


@SETTINGS
@given(text=st.text(max_size=60))
def test_any_transform_text_is_a_spec_or_names_the_flag(text: str) -> None:
    try:
        spec = parse_transform(text)
    except BadInputError as e:
        assert str(e).startswith("--transform ")
    else:
        assert spec.channels in (1, 3)
        assert spec.crop is None or 8 <= spec.crop <= 424
        assert spec.size is None or 8 <= spec.size <= 1024


@SETTINGS
@given(st.lists(st.floats(0, 10), min_size=37, max_size=37), st.integers(0, 36))
def test_tree_outputs_obey_the_tree_and_a_nudge_is_caught(raw: list[float], cell: int) -> None:
    out = tree_normalise(torch.tensor([raw], dtype=torch.float64)).numpy()
    assert check_consistency(out).ok
    nudged = out.copy()
    nudged[0, cell] += 0.01
    report = check_consistency(nudged)
    touches = [q for q in QUESTIONS if q.start <= cell < q.stop or q.parent_column == cell]
    assert not report.ok
    assert report.worst_question in {q.number for q in touches}
    assert report.worst_residual == np.float64(report.worst_residual) >= 0.01 - 1e-9
