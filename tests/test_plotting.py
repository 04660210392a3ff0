"""`galaxyzoo plot` and `galaxyzoo preview`: real PNGs from a tiny run trained on synthetic data."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.metrics import question_scores
from galaxyzoo_cli.core.schema import QUESTIONS, question
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.core.summary import read_summary
from galaxyzoo_cli.data.catalogue import Catalogue
from galaxyzoo_cli.data.synthetic import generate
from galaxyzoo_cli.outputs import drawing, figure_data
from galaxyzoo_cli.outputs.preview import preview
from galaxyzoo_cli.training.loop import train
from galaxyzoo_cli.training.run_folder import resolve_run

RUN_FIGURES = ("loss.png", "accuracy.png", "scatter.png", "gallery.png")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, run folder): 60 synthetic galaxies and a 2-epoch test_tiny run (read-only)."""
    root = tmp_path_factory.mktemp("plotting")
    data_dir = root / "data"
    generate(data_dir=data_dir, n_train=60, n_test=0, seed=0)
    config = TrainConfig(model="test_tiny", epochs=2, batch_size=16, device="cpu", cache=False)
    result = train(config, data_dir=data_dir, runs_dir=root / "runs")
    return data_dir, result.run_dir


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GALAXYZOO_DATA_DIR", raising=False)


def copy_run(run_dir: Path, dest: Path) -> Path:
    """A copy of a run folder without its plots, safe to change."""
    return Path(shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("*.png")))


def move_data_away(run_dir: Path) -> None:
    """Point the run's checkpoints at a data folder that does not exist."""
    import torch

    for path in (run_dir / "weights").glob("*.pt"):
        raw = torch.load(path, weights_only=True)
        raw["data"]["data_dir"] = str(run_dir / "moved-away")
        torch.save(raw, path)


BCE_METRICS = (  # a run whose loss is not the RMSE's: the lowest validation loss (epoch 2,
    # the one weights/best.pt keeps) is not the lowest validation RMSE (epoch 3)
    "epoch,train_loss,val_loss,val_rmse,lr,seconds\n"
    "1,0.620,0.560,0.1500,0.002,1.0\n"
    "2,0.550,0.540,0.1400,0.002,1.0\n"
    "3,0.500,0.550,0.1300,0.001,1.0\n"
)


def with_metrics(run_dir: Path, metrics_csv: str) -> Path:
    """The run with these metrics.csv rows (its summary rebuilt from them)."""
    (run_dir / "metrics.csv").write_text(metrics_csv)
    (run_dir / "summary.json").unlink(missing_ok=True)
    return run_dir


def png_size(path: Path) -> tuple[int, int]:
    """Pixel size of a PNG, after checking that it is one and decodes completely."""
    assert path.stat().st_size > 1000, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        return im.size


# ---------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------


def test_plot_two_runs_writes_figures_into_each_run_and_a_comparison(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run_dir = tiny
    first = copy_run(run_dir, tmp_path / "first")
    second = copy_run(run_dir, tmp_path / "second")
    move_data_away(second)  # its galaxies are gone: only its curves can be drawn

    result = figure_data.plot_runs([first, second], use_cache=False)

    compare = tmp_path / "compare-first-second.png"  # beside the runs, not inside the first
    expected = [first / f for f in RUN_FIGURES] + [second / "loss.png", compare]
    assert result.paths == expected
    [note] = result.skipped
    assert (
        note.startswith("second: accuracy.png, scatter.png, gallery.png (") and "moved-away" in note
    )
    for path in expected:
        width, height = png_size(path)
        assert 600 <= width <= 2500 and 300 <= height <= 2000, (path, width, height)
    assert sorted(second.glob("*.png")) == [second / "loss.png"]
    assert json.loads(json.dumps(result.as_dict()))["paths"] == [str(p) for p in expected]
    assert result.summary().splitlines() == [str(p) for p in expected]


def test_plot_cli_json_lists_the_files_written_into_out(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run_dir = tiny
    out = tmp_path / "figures" / "nested"

    result = CliRunner().invoke(
        app, ["plot", str(run_dir), "--out", str(out), "--device", "cpu", "--no-cache", "--json"]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    paths = [Path(p) for p in report["paths"]]
    assert [p.name for p in paths] == list(RUN_FIGURES)
    assert all(p.parent == out and p.is_file() and png_size(p) for p in paths)
    assert sorted(out.iterdir()) == sorted(paths)  # one run: no prefix, no compare.png
    assert report["runs"] == [str(run_dir)]


def test_plot_runs_sharing_a_folder_get_prefixed_names(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    """A run given twice (folder and checkpoint) into one --out: no file overwrites another."""
    _, run_dir = tiny
    run = copy_run(run_dir, tmp_path / "run")
    move_data_away(run)
    out = tmp_path / "out"

    result = figure_data.plot_runs([run, run / "weights" / "best.pt"], out_dir=out)

    assert [p.name for p in result.paths] == [
        "run-loss.png", "run-2-loss.png", "compare-run-run-2.png"
    ]  # fmt: skip
    assert all(p.parent == out and png_size(p) for p in result.paths)


def test_plot_run_with_nothing_to_plot_is_bad_input(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run_dir = tiny
    run = copy_run(run_dir, tmp_path / "run")
    (run / "metrics.csv").unlink()
    move_data_away(run)

    with pytest.raises(BadInputError, match="nothing to plot: metrics.csv has no rows.*moved-away"):
        figure_data.plot_runs([run])
    # A data folder without the run's galaxies is the same situation.
    other = tmp_path / "other"
    generate(data_dir=other, n_train=4, n_test=0, seed=1)
    with pytest.raises(BadInputError, match="none of the run's validation galaxies"):
        figure_data.plot_runs([run], data_dir=other)
    assert not list(run.glob("*.png"))


def test_plot_marks_the_kept_epoch_not_the_lowest_rmse(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    """The loss figure's best epoch and the comparison's "(best …)" are the epoch best.pt keeps
    (lowest validation loss for the tree), with its RMSE: 0.1400 at epoch 2, not 0.1300."""
    from matplotlib.axes import Axes

    _, run_dir = tiny
    run_dir = with_metrics(copy_run(run_dir, tmp_path / "bce"), BCE_METRICS)
    move_data_away(run_dir)  # the record alone: no galaxy is read, no model built
    run = figure_data.read_run(resolve_run(run_dir), "bce")
    assert run.val is None and run.train is None and run.val_problem == "not predicted"
    assert run.summary is not None and run.summary["best_epoch"] == 2
    assert drawing.best_index(run) == 1

    fig = drawing.loss_figure(run)
    loss_ax, rmse_ax = (ax for ax in fig.axes if isinstance(ax, Axes))
    for ax in (loss_ax, rmse_ax):
        assert "best epoch 2" in ax.get_legend_handles_labels()[1]
    assert [t.get_text() for t in rmse_ax.texts] == ["0.1400"]
    drawing.pyplot().close(fig)
    fig = drawing.compare_figure([run, replace(run, name="other")])
    assert fig.axes[0].get_legend_handles_labels()[1] == [
        "bce (best 0.1400)",
        "other (best 0.1400)",
    ]
    drawing.pyplot().close(fig)


def test_plot_cli_bad_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "no-such-run")])

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "no-such-run" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_accuracy_shows_questions_without_labels_as_absent_not_zero(tmp_path: Path) -> None:
    from matplotlib.patches import Rectangle

    rng = np.random.default_rng(0)
    labels = rng.random((20, 37))
    labels[:, question(9).slice] = np.nan  # no galaxy has Q9 labelled
    pred = rng.random((20, 37))
    cat = Catalogue(tmp_path, np.arange(20), labels, [])
    part = drawing.Predicted(cat, pred, question_scores(pred, labels))
    run = drawing.RunData("run", tmp_path, "mse", [], val=part, train=part, provenance={})

    fig = drawing.accuracy_figure(run)

    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches if isinstance(bar, Rectangle)]
    assert len(heights) == 2 * (len(QUESTIONS) - 1)  # Q9 has no bar, in either series
    assert all(0 < h <= 1 for h in heights)
    assert [t.get_text() for t in ax.texts if t.get_text() == "no labels"] == ["no labels"] * 2
    assert ax.get_xticklabels()[0].get_text() == "Q1 smooth…"
    drawing.pyplot().close(fig)


def _spiral(q1: list[float], q7: list[float] | None = None) -> np.ndarray:
    """Labels whose top-answer path is Q1 then, for a smooth galaxy, Q7 (deepest shown)."""
    v = np.zeros(37)
    v[question(1).slice] = q1
    if q7 is not None:
        v[question(7).slice] = q7
    return v


def test_the_gallery_is_green_only_when_every_answer_shown_is_right(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    """Green needs the right top answer at a close vote fraction for Q1 *and* the deepest
    question shown; Q1 agreeing is not enough."""
    data_dir, _ = tiny
    from galaxyzoo_cli.data.catalogue import load_catalogue

    paths = load_catalogue(data_dir).paths[:4]
    truth = np.stack([_spiral([0.8, 0.2, 0.0], [0.7, 0.2, 0.1])] * 4)
    pred = np.stack([
        _spiral([0.75, 0.2, 0.05], [0.65, 0.25, 0.1]),  # both right
        _spiral([0.75, 0.2, 0.05], [0.1, 0.2, 0.7]),  # Q1 right, Q7's top answer wrong
        _spiral([0.5, 0.45, 0.05], [0.65, 0.25, 0.1]),  # Q1's top right, its fraction 0.3 off
        _spiral([0.2, 0.8, 0.0], [0.65, 0.25, 0.1]),  # Q1 wrong
    ])  # fmt: skip
    cat = Catalogue(tmp_path, np.arange(1, 5), truth, paths)
    part = drawing.Predicted(cat, pred, question_scores(pred, truth))
    run = drawing.RunData("run", tmp_path, "mse", [], val=part, train=None, provenance={})

    fig = drawing.gallery_figure(run)

    from matplotlib.colors import to_hex

    titles = {ax.get_title().split("\n")[0]: ax.title for ax in fig.axes if ax.get_title()}
    colour = {k: to_hex(t.get_color()) for k, t in titles.items()}
    green, red = to_hex("darkgreen"), to_hex("firebrick")
    assert colour == {"GalaxyID 1": green, "GalaxyID 2": red, "GalaxyID 3": red,
                      "GalaxyID 4": red}  # fmt: skip
    assert titles["GalaxyID 2"].get_text().count("✗") == 1
    assert "Q7 pred: cigar-shaped (0.70) ✗" in titles["GalaxyID 2"].get_text()
    assert "Q1 pred: smooth (0.50) ✗" in titles["GalaxyID 3"].get_text()
    assert "within 0.15" in fig.get_suptitle()
    drawing.pyplot().close(fig)


def test_the_scatter_counts_the_answers_it_plots(tmp_path: Path) -> None:
    """A run trained on some questions (the rest unlabelled) says how many answers it plots."""
    rng = np.random.default_rng(1)
    labels = rng.random((30, 37))
    labels[:, 17:] = np.nan
    pred = rng.random((30, 37))
    cat = Catalogue(tmp_path, np.arange(30), labels, [])
    part = drawing.Predicted(cat, pred, question_scores(pred, labels))
    run = drawing.RunData("run", tmp_path, "mse", [], val=part, train=None, provenance={})
    fig = drawing.scatter_figure(run)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("All 17 labelled answers\nRMSE") for t in titles), titles
    assert not any("All 37" in t for t in titles)
    drawing.pyplot().close(fig)


def testtop_path_follows_the_volunteers_answers_down_the_tree() -> None:
    spiral = np.zeros(37)
    for number, answers in {1: [0.1, 0.9, 0], 2: [0.1, 0.8], 4: [0.7, 0.1], 6: [0.2, 0.8]}.items():
        spiral[question(number).slice] = answers
    smooth = np.zeros(37)
    smooth[question(1).slice] = [0.8, 0.2, 0.0]
    unlabelled = np.full(37, np.nan)

    assert drawing.top_path(spiral) == [1, 2, 3, 4, 5, 10, 11]
    assert drawing.top_path(smooth) == [1, 7]
    assert drawing.top_path(unlabelled) == []


def test_the_report_shows_provenance_as_a_table_and_compares_models(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    import html.parser

    from galaxyzoo_cli.outputs.html_report import report

    _, run_dir = tiny
    runs = [copy_run(run_dir, tmp_path / "a"), copy_run(run_dir, tmp_path / "b")]
    with_metrics(runs[0], BCE_METRICS)
    out = report(runs, out=tmp_path / "r.html").out
    page = out.read_text()

    class Tables(html.parser.HTMLParser):
        """The text of each table cell, row by row, of every table."""

        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag in ("td", "th") and self.cell is not None and self.rows:
                self.rows[-1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    tables = Tables()
    tables.feed(page)
    rows = tables.rows
    head = next(r for r in rows if r[:2] == ["run", "model"])
    assert head[2:] == ["epochs", "best validation RMSE (training)", "validation RMSE (now)"]
    compared = [r for r in rows if r and r[0] in ("a", "b") and len(r) == 5]
    assert [r[1].split(",")[0] for r in compared] == ["test_tiny", "test_tiny"]
    # The best column is the kept epoch's RMSE (lowest loss: epoch 2), not the lowest RMSE.
    assert compared[0][3] == "0.1400"
    summary = read_summary(runs[1])
    assert summary is not None
    assert compared[1][3] == f"{summary['best']['val_rmse']:.4f}"
    # Provenance: a table, not a Python dict; booleans as yes/no everywhere.
    assert "{'tool'" not in page and "'sha256'" not in page
    assert "<h2>Provenance</h2>" in page
    by_key = {r[0]: r[1] for r in rows if len(r) == 2}
    assert by_key["tool"] == "galaxyzoo-cli" and by_key["command"] == "report"
    assert by_key["frozen features"] == "no" and by_key["augment"] in ("yes", "no")
    assert len(by_key["sha256"]) == 64
    assert not any(c in ("True", "False", "None") for r in rows for c in r)


# ---------------------------------------------------------------------------------------------
# preview
# ---------------------------------------------------------------------------------------------


def test_preview_grid_grows_with_rows_and_columns(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, _ = tiny
    sizes = {}
    for n, transforms in (
        (2, ["original"]),
        (4, ["original"]),
        (2, ["original", "gray", "size=32"]),
    ):
        out = tmp_path / f"{n}x{len(transforms)}.png"
        result = preview(data_dir, n=n, transforms=transforms, out=out)
        assert result.out == out and len(result.galaxy_ids) == n
        assert result.transforms == transforms
        sizes[n, len(transforms)] = png_size(out)

    assert sizes[4, 1][0] > sizes[2, 1][0] * 1.5  # more galaxies: wider
    assert sizes[2, 3][1] > sizes[2, 1][1] * 2  # more transforms: taller
    assert sizes[2, 3][0] == pytest.approx(sizes[2, 1][0], rel=0.1)


def test_preview_cli_writes_one_row_per_transform(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, _ = tiny
    out = tmp_path / "x.png"
    args = ["preview", "--data-dir", str(data_dir), "--out", str(out), "-n", "3"]
    args += ["--transform", "gray,crop=256,size=64", "--transform", "original", "--json"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["out"] == str(out) and len(report["galaxy_ids"]) == 3
    assert report["transforms"] == ["gray,crop=256,size=64", "original"]
    width, height = png_size(out)
    assert width > height  # 3 galaxies side by side, 2 rows


def test_preview_cli_bad_transform_is_exit_2(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, _ = tiny
    out = tmp_path / "x.png"
    args = ["preview", "--data-dir", str(data_dir), "--out", str(out), "--transform", "blur=3"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2, result.output
    assert "--transform" in result.stderr and "blur=3" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
