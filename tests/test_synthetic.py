"""The synthetic generator: layout, determinism, label consistency, realism and safety."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core import schema
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.data import catalogue as data
from galaxyzoo_cli.data import rendering, synthetic

N_TRAIN, N_TEST, SEED = 40, 6, 3


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated folder shared by the read-only tests."""
    out = tmp_path_factory.mktemp("syn") / "data"
    synthetic.generate(out, n_train=N_TRAIN, n_test=N_TEST, seed=SEED)
    return out


def _col(name: str) -> int:
    return schema.COLUMNS.index(name)


def _params(**changes: object) -> synthetic.GalaxyParams:
    """A plain face-on disk with no arms, bar or odd feature; ``changes`` override fields."""
    base = synthetic.GalaxyParams(
        kind="disk",
        featured=0.8,
        radius=16.0,
        brightness=220.0,
        axis_ratio=0.9,
        angle=0.3,
        bulge=0.3,
        bulge_shape="rounded",
        bar=0.0,
        arms=0,
        pitch=20.0,
        odd="",
        odd_strength=0.0,
        odd_angle=1.0,
        neighbours=0,
        colour=0.5,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _mean_votes(params: synthetic.GalaxyParams, n: int = 30) -> np.ndarray:
    rows = [synthetic.vote_fractions(params, np.random.default_rng([9, i])) for i in range(n)]
    return np.mean(rows, axis=0)


# --------------------------------------------------------------------------------------------
# Layout and labels
# --------------------------------------------------------------------------------------------


def test_layout_ids_and_marker(layout: Path) -> None:
    train_ids, _ = data.list_images(layout / data.TRAIN_IMAGES)
    test_ids, _ = data.list_images(layout / data.TEST_IMAGES)
    table = data.read_labels(layout / data.LABELS_CSV)
    assert len(train_ids) == N_TRAIN and len(test_ids) == N_TEST
    assert np.array_equal(table.ids, train_ids)  # rows sorted by GalaxyID, one per image
    all_ids = np.concatenate([train_ids, test_ids])
    assert len(np.unique(all_ids)) == N_TRAIN + N_TEST  # unique, test disjoint from train
    assert all_ids.min() >= 100008 and all_ids.max() <= 999996
    marker = json.loads((layout / synthetic.MARKER).read_text())
    assert marker["seed"] == SEED and marker["n_train"] == N_TRAIN and marker["n_test"] == N_TEST
    assert marker["generator_version"] == synthetic.GENERATOR_VERSION
    report = data.check_layout(layout, require_test=True)
    assert report.n_labelled_images == N_TRAIN and report.n_test_images == N_TEST
    assert not list(layout.parent.glob(".*.tmp"))  # the temporary folder is gone


def test_no_test_folder_without_test_images(tmp_path: Path) -> None:
    synthetic.generate(tmp_path / "d", n_train=2, n_test=0, seed=0)
    assert not (tmp_path / "d" / data.TEST_IMAGES).exists()
    assert len(list((tmp_path / "d" / data.TRAIN_IMAGES).iterdir())) == 2


def test_labels_obey_the_tree_through_the_csv(layout: Path) -> None:
    values = data.read_labels(layout / data.LABELS_CSV).values.astype(np.float64)
    assert values.shape == (N_TRAIN, schema.N_OUTPUTS)
    assert not np.isnan(values).any()
    assert values.min() >= 0.0 and values.max() <= 1.0
    report = schema.check_consistency(values, tolerance=1e-6)
    assert report.ok, report.describe()
    # Volunteers disagree: labels are fractions, not one-hot answers.
    assert 0.05 < values[:, _col("Class1.1")].std() and (values[:, :3].max(axis=1) < 1).any()


def test_vote_rows_are_exactly_consistent() -> None:
    rng = np.random.default_rng(0)
    params = [synthetic.sample_galaxy(rng) for _ in range(300)]
    rows = np.array([synthetic.vote_fractions(p, rng) for p in params])
    report = schema.check_consistency(rows, tolerance=1e-12)
    assert report.ok, report.describe()
    assert np.allclose(rows[:, _col("Class6.1")] + rows[:, _col("Class6.2")], 1.0)
    # Deep questions are reached by some galaxies and not by others.
    reached = schema.reached(rows).mean(axis=0)
    assert 0.1 < reached[8] < 0.95 and 0.1 < reached[9] < 0.95


def test_labels_follow_the_drawn_morphology() -> None:
    smooth = _mean_votes(_params(kind="smooth", featured=0.02, bulge=1.0, axis_ratio=0.95))
    edge_on = _mean_votes(_params(kind="edge_on", featured=0.95, axis_ratio=0.15, bulge=0.3))
    spiral = _mean_votes(_params(featured=0.9, arms=2, pitch=10.0))
    star = _mean_votes(_params(kind="star", featured=0.0, bulge=0.0))
    cigar = _mean_votes(_params(kind="smooth", featured=0.02, bulge=1.0, axis_ratio=0.25))
    assert smooth[_col("Class1.1")] > 0.8 and smooth[_col("Class7.1")] > 0.5
    assert cigar[_col("Class7.3")] > 0.5
    assert edge_on[_col("Class2.1")] > 0.7 and edge_on[_col("Class9.1")] > 0.5
    assert spiral[_col("Class4.1")] > 0.6 and spiral[_col("Class11.2")] > 0.3
    assert spiral[_col("Class10.1")] > spiral[_col("Class10.3")]
    assert star[_col("Class1.3")] > 0.6
    for votes in (smooth, edge_on, spiral, star):
        assert abs(votes[_col("Class6.1")] + votes[_col("Class6.2")] - 1.0) < 1e-9


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def test_images_are_dark_sky_with_a_bright_centre(layout: Path) -> None:
    _, paths = data.list_images(layout / data.TRAIN_IMAGES)
    sizes = [p.stat().st_size for p in paths]
    assert 6_000 < np.mean(sizes) < 25_000  # about 13 KB, like the Kaggle JPEGs
    bright = 0
    for path in paths[:10]:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (424, 424)
            a = np.asarray(im, dtype=np.float64)
        corners = np.concatenate([a[:30, :30], a[:30, -30:], a[-30:, :30], a[-30:, -30:]])
        assert np.median(corners) < 12
        bright += a[202:223, 202:223].max() > 120
    assert bright >= 8  # stars and faint galaxies aside, centres are bright


def _light(params: synthetic.GalaxyParams) -> np.ndarray:
    """Mean rendered image of ``params`` minus the sky level, (424, 424, 3) float."""
    rng = np.random.default_rng(5)
    img = np.mean([rendering.render(params, rng).astype(np.float64) for _ in range(3)], axis=0)
    return img - np.median(img[:40, :40].reshape(-1, 3), axis=0)


def test_images_show_the_morphology() -> None:
    smooth = _light(_params(kind="smooth", featured=0.0, bulge=1.0, axis_ratio=0.95))
    spiral = _light(_params(featured=0.95, arms=2, bulge=0.15))
    edge_on = _light(_params(kind="edge_on", axis_ratio=0.15, angle=0.0))
    # Centres are yellow-red; spiral arms are bluer than ellipticals.
    centre = smooth[207:217, 207:217].reshape(-1, 3).mean(axis=0)
    assert centre[0] > centre[1] > centre[2]

    def blue_over_red(light: np.ndarray) -> float:
        ring = light[150:274, 150:274]
        mask = ring.sum(axis=2) > 30
        return float(ring[mask][:, 2].sum() / ring[mask][:, 0].sum())

    assert blue_over_red(spiral) > blue_over_red(smooth) + 0.05
    # Edge-on disks are long and thin: the light spreads along the major axis (angle 0 = x).
    grey = np.clip(edge_on.mean(axis=2), 0, None)
    grey[grey < 20] = 0
    ys, xs = np.nonzero(grey)
    assert np.ptp(xs) > 3 * np.ptp(ys)


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_prefix_galaxies(layout: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthetic.generate(again, n_train=N_TRAIN, n_test=N_TEST, seed=SEED)
    csv = (layout / data.LABELS_CSV).read_bytes()
    assert (again / data.LABELS_CSV).read_bytes() == csv
    for folder in (data.TRAIN_IMAGES, data.TEST_IMAGES):
        names = sorted(p.name for p in (layout / folder).iterdir())
        assert names == sorted(p.name for p in (again / folder).iterdir())
        for name in names[:3]:
            assert (layout / folder / name).read_bytes() == (again / folder / name).read_bytes()
    # Galaxy i does not depend on how many galaxies are generated.
    fewer = tmp_path / "fewer"
    synthetic.generate(fewer, n_train=5, seed=SEED)
    full = data.read_labels(layout / data.LABELS_CSV)
    part = data.read_labels(fewer / data.LABELS_CSV)
    assert np.isin(part.ids, full.ids).all()
    assert np.array_equal(part.values, full.values[np.searchsorted(full.ids, part.ids)])
    for gid in part.ids[:2]:
        name = f"{gid}.jpg"
        image = (fewer / data.TRAIN_IMAGES / name).read_bytes()
        assert image == (layout / data.TRAIN_IMAGES / name).read_bytes()


@pytest.mark.slow  # worker processes
def test_worker_processes_give_the_same_bytes(layout: Path, tmp_path: Path) -> None:
    """Rendered by 2 processes (enough galaxies to use them): the same files as one process."""
    n = 4 * synthetic._RENDER_CHUNK + 20
    many = tmp_path / "many"
    synthetic.generate(many, n_train=n, seed=SEED, workers=2)
    full = data.read_labels(many / data.LABELS_CSV)
    ids = synthetic.galaxy_ids(n, SEED).tolist()
    for start in (0, n - 3):  # one process, directly, for a chunk at each end
        folder = tmp_path / f"one-{start}"
        folder.mkdir()
        _, rows, _ = synthetic._render_chunk(folder, SEED, False, start, ids[start : start + 3])
        for k, gid in enumerate(ids[start : start + 3]):
            assert (folder / f"{gid}.jpg").read_bytes() == (
                many / data.TRAIN_IMAGES / f"{gid}.jpg"
            ).read_bytes()
            row = full.values[np.searchsorted(full.ids, gid)]
            np.testing.assert_allclose(row, rows[k], rtol=1e-6, atol=1e-8)
    # and the first galaxies are those of the small, single-process folder
    small = data.read_labels(layout / data.LABELS_CSV)
    shared = np.intersect1d(small.ids, full.ids)
    assert len(shared) == N_TRAIN


def test_other_seed_gives_other_galaxies(layout: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthetic.generate(other, n_train=N_TRAIN, seed=SEED + 1)
    assert (other / data.LABELS_CSV).read_bytes() != (layout / data.LABELS_CSV).read_bytes()
    ids, _ = data.list_images(other / data.TRAIN_IMAGES)
    assert not np.array_equal(ids, data.list_images(layout / data.TRAIN_IMAGES)[0])


# --------------------------------------------------------------------------------------------
# Safety
# --------------------------------------------------------------------------------------------


def test_same_request_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "d"
    synthetic.generate(out, n_train=4, n_test=2, seed=1)
    stamp = (out / data.LABELS_CSV).stat().st_mtime_ns
    result = synthetic.generate(out, n_train=4, n_test=2, seed=1)
    assert result.skipped and result.as_dict()["skipped"] is True
    assert "nothing to do" in result.summary()
    assert (out / data.LABELS_CSV).stat().st_mtime_ns == stamp


def test_other_data_is_refused_without_force(tmp_path: Path) -> None:
    out = tmp_path / "d"
    synthetic.generate(out, n_train=4, seed=1)
    with pytest.raises(BadInputError, match="--force"):
        synthetic.generate(out, n_train=4, seed=2)
    real = tmp_path / "real"
    real.mkdir()
    (real / data.LABELS_CSV).write_text("GalaxyID\n")  # a user's own labels, no marker
    with pytest.raises(BadInputError, match="already holds data"):
        synthetic.generate(real, n_train=4, seed=1)
    assert (real / data.LABELS_CSV).read_text() == "GalaxyID\n"


def test_force_replaces_only_the_layout(tmp_path: Path) -> None:
    out = tmp_path / "d"
    synthetic.generate(out, n_train=4, n_test=3, seed=1)
    (out / "notes.txt").write_text("mine")
    result = synthetic.generate(out, n_train=6, n_test=0, seed=2, force=True)
    assert not result.skipped
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / data.TEST_IMAGES).exists()
    assert len(data.read_labels(out / data.LABELS_CSV).ids) == 6
    assert len(list((out / data.TRAIN_IMAGES).iterdir())) == 6
    assert json.loads((out / synthetic.MARKER).read_text())["seed"] == 2


class _InterruptingReporter:
    """Raises KeyboardInterrupt (as Ctrl-C would) after ``after`` rendered images (progress
    comes in chunks: the count is of images, rounded up to a chunk)."""

    def __init__(self, after: int) -> None:
        self.after = after

    @contextlib.contextmanager
    def task(self, description: str, total: float | None) -> Iterator[_InterruptingReporter]:
        yield self

    def advance(self, n: float = 1) -> None:
        self.after -= n
        if self.after <= 0:
            raise KeyboardInterrupt

    def log(self, message: str) -> None:
        pass


def test_interrupted_run_leaves_no_layout(tmp_path: Path) -> None:
    out = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(out, n_train=10, n_test=2, seed=1, reporter=_InterruptingReporter(4))
    for name in (data.TRAIN_IMAGES, data.TEST_IMAGES, data.LABELS_CSV, synthetic.MARKER):
        assert not (out / name).exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary folder left behind
    # An interrupted --force run keeps the old layout whole.
    synthetic.generate(out, n_train=3, seed=1)
    before = (out / data.LABELS_CSV).read_bytes()
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(out, n_train=8, seed=2, force=True, reporter=_InterruptingReporter(4))
    assert (out / data.LABELS_CSV).read_bytes() == before
    assert len(list((out / data.TRAIN_IMAGES).iterdir())) == 3


@pytest.mark.parametrize(
    ("n_train", "n_test", "flag"),
    [(0, 0, "--synthetic"), (-3, 0, "--synthetic"), (5, -1, "--test-images")],
)
def test_bad_arguments(tmp_path: Path, n_train: int, n_test: int, flag: str) -> None:
    with pytest.raises(BadInputError, match=flag):
        synthetic.generate(tmp_path / "d", n_train=n_train, n_test=n_test)
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def test_cli_round_trip(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["fetch", "--synthetic", "10", "--test-images", "5", "--seed", "1"]
    args += ["--data-dir", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout)
    assert reply["n_train"] == 10 and reply["n_test"] == 5 and reply["seed"] == 1
    assert reply["skipped"] is False and reply["images_per_second"] > 0
    assert data.check_layout(out, require_test=True).n_test_images == 5
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.stdout
    clash = runner.invoke(app, ["fetch", "--synthetic", "3", "--data-dir", str(out)])
    assert clash.exit_code == 2
    assert "--force" in clash.output
