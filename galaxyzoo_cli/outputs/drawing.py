"""The figures of a run, drawn with matplotlib (imported lazily, headless Agg backend) from what
:func:`galaxyzoo_cli.outputs.figure_data.collect_runs` gathers: curves, accuracy, scatter, gallery,
comparison.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli.core import provenance
from galaxyzoo_cli.core.files import atomic_path, to_json
from galaxyzoo_cli.core.metrics import QuestionScore, kaggle_rmse
from galaxyzoo_cli.core.schema import QUESTIONS, Question, question
from galaxyzoo_cli.core.summary import read_summary
from galaxyzoo_cli.data.catalogue import Catalogue
from galaxyzoo_cli.data.images import InputSpec, load_image
from galaxyzoo_cli.training.curves import (
    STYLE,
    TRAIN_COLOR,
    VAL_COLOR,
    column,
    curves_figure,
    pyplot,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from galaxyzoo_cli.training.run_folder import Checkpoint


def save_figure(
    fig: Figure, out: str | os.PathLike[str], prov: dict[str, Any] | None = None, dpi: int = 110
) -> Path:
    """Write a figure as PNG atomically (its provenance in the PNG's text) and close it."""
    out = Path(out)
    metadata = {provenance.PNG_KEY: to_json(prov, None)} if prov is not None else None
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata=metadata)
    pyplot().close(fig)
    return out


_GALLERY = 8


@dataclass(frozen=True)
class Predicted:
    """A run's predictions on the labelled galaxies of one split, and their per-question scores."""

    cat: Catalogue
    pred: np.ndarray
    scores: list[QuestionScore]


@dataclass(frozen=True)
class RunData:
    """Everything the figures of one run are drawn from."""

    name: str
    run_dir: Path
    loss_name: str
    metrics: list[dict[str, float]]
    val: Predicted | None
    """None when the run's validation galaxies could not be read (``val_problem`` says why)."""
    train: Predicted | None
    provenance: dict[str, Any]
    val_problem: str = ""
    input: InputSpec | None = None
    """What the model sees of an image (for showing it)."""
    training_means: np.ndarray | None = None
    """Column means of the run's training labels: the mean baseline."""
    model: str = ""
    """The run's model (architecture) name."""
    summary: Mapping[str, Any] | None = None
    """The run's summary (:func:`galaxyzoo_cli.core.summary.read_summary`): its best epoch. None:
    read from ``run_dir`` when a figure needs it."""
    checkpoint: Checkpoint | None = None
    """The checkpoint the run was read from (its model is built only to predict)."""
    data_dir: Path | None = None
    """The data folder its galaxies are read from."""


def question_label(q: Question) -> str:
    """A short axis label: ``Q1 smooth…``, ``Q2 disk edge-on``…"""
    head, comma, _ = q.text.rstrip("?").partition(",")
    return f"Q{q.number} {head}{'…' if comma else ''}"


def best_index(run: RunData) -> int | None:
    """The row of ``run.metrics`` of the run's best epoch: the one its summary names, by the one
    definition of best (the epoch ``weights/best.pt`` keeps, :mod:`galaxyzoo_cli.core.summary`);
    None when there is none."""
    summary = run.summary if run.summary is not None else read_summary(run.run_dir)
    best_epoch = summary.get("best_epoch") if summary is not None else None
    if best_epoch is None:
        return None
    return next((row for row, m in enumerate(run.metrics) if m.get("epoch") == best_epoch), None)


def loss_figure(run: RunData) -> Figure:
    """Training and validation loss (left) and the validation metric (right) per epoch, the
    run's best epoch marked (:func:`galaxyzoo_cli.training.curves.curves_figure`)."""
    return curves_figure(run.name, run.metrics, run.loss_name, best_index(run))


def accuracy_figure(run: RunData) -> Figure:
    """Grouped bars: per-question top-answer accuracy on training and validation galaxies."""
    assert run.val is not None
    plt = pyplot()
    series = [("validation", run.val, VAL_COLOR)]
    if run.train is not None:
        series.insert(0, ("training", run.train, TRAIN_COLOR))
    x = np.arange(len(QUESTIONS))
    width = 0.8 / len(series)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(12, 4.8), layout="constrained")
        for i, (label, part, color) in enumerate(series):
            acc = np.array([s.accuracy for s in part.scores])
            pos = x + (i - (len(series) - 1) / 2) * width
            shown = np.isfinite(acc)  # NaN: no labelled galaxy reached the question
            bars = ax.bar(
                pos[shown],
                acc[shown],
                width,
                color=color,
                label=f"{label} ({len(part.cat)} galaxies)",
            )
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
            for p in pos[~shown]:
                ax.text(
                    p,
                    0.02,
                    "no labels",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="0.45",
                )
        ax.set_xticks(x, [question_label(q) for q in QUESTIONS], rotation=30, ha="right")
        ax.set_ylim(0, 1.22)  # headroom for the legend above the bars
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("top-answer accuracy")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper right", ncol=len(series), framealpha=0.9)
        ax.set_title(f"{run.name}: per-question accuracy (predicted top answer = volunteers')")
    return fig


def scatter_figure(run: RunData) -> Figure:
    """Predicted vs true vote fraction on the validation split: one panel per question + all."""
    assert run.val is not None
    plt = pyplot()
    target, pred = run.val.cat.labels, run.val.pred
    size = float(np.clip(3000 / max(len(target), 1), 2, 14))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(3, 4, figsize=(14, 10.5), layout="constrained", squeeze=False)
        flat = axes.ravel()
        for ax, q, scored in zip(flat, QUESTIONS, run.val.scores, strict=False):
            for column, answer in enumerate(q.answers, start=q.start):
                true, predicted = target[:, column], pred[:, column]
                has_label = ~np.isnan(true)
                ax.scatter(true[has_label], predicted[has_label], s=size, alpha=0.5, label=answer,
                           rasterized=True)  # fmt: skip
            rmse = "no labels" if np.isnan(scored.rmse) else f"RMSE {scored.rmse:.3f}"
            ax.set_title(f"{question_label(q)}\n{rmse}", fontsize=10)
            ax.legend(fontsize=6, loc="upper left", markerscale=1.5, ncol=1 + len(q.answers) // 5)
        labelled = ~np.isnan(target)
        n_answers = int(labelled.any(axis=0).sum())  # the answers with a label to plot
        last = flat[len(QUESTIONS)]
        last.scatter(
            target[labelled], pred[labelled], s=size, alpha=0.3, color="0.3", rasterized=True
        )
        rmse_all = kaggle_rmse(pred, target)
        last.set_title(f"All {n_answers} labelled answers\nRMSE {rmse_all:.3f}", fontsize=10)
        for ax in flat:
            ax.plot([0, 1], [0, 1], color="crimson", lw=1, ls="--")
            ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
        for ax in axes[-1]:
            ax.set_xlabel("true vote fraction")
        for ax in axes[:, 0]:
            ax.set_ylabel("predicted")
        fig.suptitle(f"{run.name}: predicted vs true on {len(target)} validation galaxies")
    return fig


def top_path(values: np.ndarray) -> list[int]:
    """Question numbers on the volunteers' top-answer path down the tree from Q1, shallow first.

    Stops where a question's answers are missing (NaN); the last one is the deepest reached.
    """
    path: list[int] = []
    frontier = [1]
    while frontier:
        q = question(frontier.pop(0))
        fractions = values[q.slice]
        if np.isnan(fractions).any():
            continue
        path.append(q.number)
        top = (q.number, int(np.argmax(fractions)) + 1)
        frontier.extend(child.number for child in QUESTIONS if child.parent == top)
    return path


def shown_questions(truth: np.ndarray) -> list[int]:
    """The questions a galaxy's caption shows: Q1 and the deepest one the volunteers reached on
    their top-answer path (:func:`top_path`); none when Q1 is unlabelled."""
    path = top_path(truth)
    return path[:1] + path[1:][-1:]


CLOSE_ENOUGH = 0.15
"""A shown answer is right when the predicted top answer is the volunteers' top answer and its
predicted vote fraction is within this of theirs."""


@dataclass(frozen=True)
class TopAnswers:
    """One question of a galaxy as a caption shows it: the volunteers' top answer and the
    model's, each with its vote fraction, and whether the model's is right."""

    number: int
    true_answer: str
    true_fraction: float
    predicted_answer: str
    predicted_fraction: float
    right: bool
    """The same top answer as the volunteers', with a vote fraction within
    :data:`CLOSE_ENOUGH` of theirs."""


def top_answers(truth: np.ndarray, pred: np.ndarray, number: int) -> TopAnswers:
    """Question ``number``'s top answers in the labels ``truth`` and the prediction ``pred``
    (37 vote fractions each)."""
    q = question(number)
    true, predicted = truth[q.slice], pred[q.slice]
    true_top, predicted_top = int(np.argmax(true)), int(np.argmax(predicted))
    close = abs(float(predicted[true_top]) - float(true[true_top])) <= CLOSE_ENOUGH
    return TopAnswers(
        number, q.answers[true_top], float(true[true_top]), q.answers[predicted_top],
        float(predicted[predicted_top]), right=true_top == predicted_top and close,
    )  # fmt: skip


def caption(answers: TopAnswers) -> str:
    """Two caption lines: the volunteers' top answer, and the model's marked ✓ or ✗."""
    number, mark = answers.number, "✓" if answers.right else "✗"
    return (
        f"Q{number} true: {answers.true_answer} ({answers.true_fraction:.2f})\n"
        f"Q{number} pred: {answers.predicted_answer} ({answers.predicted_fraction:.2f}) {mark}"
    )


def gallery_figure(run: RunData) -> Figure:
    """Validation galaxies in full colour, captioned with true and predicted top answers of Q1
    and of the deepest question the volunteers reached; green when every answer shown is right
    (:attr:`TopAnswers.right`), red otherwise, a cross marking the wrong ones."""
    assert run.val is not None
    plt = pyplot()
    cat, pred = run.val.cat, run.val.pred
    n = min(_GALLERY, len(cat))
    pick = np.sort(np.random.default_rng(0).choice(len(cat), size=n, replace=False))
    rows = -(-n // 4)  # at most 4 a row, rows evenly filled
    cols = -(-n // rows)
    rgb = InputSpec(channels=3)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            rows, cols, figsize=(3.2 * cols, 3.9 * rows), layout="constrained", squeeze=False
        )
        for ax in axes.ravel():
            ax.axis("off")
        for ax, galaxy in zip(axes.ravel(), pick, strict=False):
            ax.imshow(load_image(cat.paths[int(galaxy)], rgb).transpose(1, 2, 0))
            shown = [top_answers(cat.labels[galaxy], pred[galaxy], number)
                     for number in shown_questions(cat.labels[galaxy])]  # fmt: skip
            lines = [f"GalaxyID {cat.ids[galaxy]}", *(caption(answers) for answers in shown)]
            right = bool(shown) and all(answers.right for answers in shown)
            ax.set_title(
                "\n".join(lines) if shown else f"{lines[0]}\nQ1 unlabelled",
                fontsize=8,
                color="darkgreen" if right else "firebrick" if shown else "0.3",
            )
        fig.suptitle(
            f"{run.name}: validation galaxies, true vs predicted top answer (Q1 and the deepest "
            "question reached)\ngreen: every answer shown is right (the volunteers' top answer, "
            f"vote fraction within {CLOSE_ENOUGH:.2f}); red: ✗ marks the answers that are not",
            fontsize=10,
        )
    return fig


def compare_figure(runs: Sequence[RunData]) -> Figure:
    """Validation RMSE per epoch of every run, and their per-question validation RMSE."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, (ax_curve, ax_bars) = plt.subplots(
            1, 2, figsize=(15, 5), layout="constrained", width_ratios=(2, 3)
        )
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        scored = [r for r in runs if r.val is not None]
        width = 0.8 / max(len(scored), 1)
        x = np.arange(len(QUESTIONS))
        for i, run in enumerate(runs):
            color = colors[i % len(colors)]
            if run.metrics:
                rmse = column(run.metrics, "val_rmse")
                row = best_index(run)  # the kept epoch's RMSE, not the lowest one
                shown = row is not None and np.isfinite(rmse[row])
                best = f" (best {rmse[row]:.4f})" if shown else ""
                ax_curve.plot(
                    column(run.metrics, "epoch"),
                    rmse,
                    marker="o",
                    ms=3,
                    color=color,
                    label=f"{run.name}{best}",
                )
            if run.val is not None:
                place = scored.index(run)
                per_q = np.array([s.rmse for s in run.val.scores])
                ax_bars.bar(
                    x + (place - (len(scored) - 1) / 2) * width,
                    per_q,
                    width,
                    color=color,
                    label=f"{run.name} ({kaggle_rmse(run.val.pred, run.val.cat.labels):.4f})",
                )
        ax_curve.set(title="Validation RMSE per epoch", xlabel="epoch", ylabel="RMSE")
        ax_curve.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_bars.set_xticks(x, [question_label(q) for q in QUESTIONS], rotation=30, ha="right")
        ax_bars.set(title="Validation RMSE per question (overall in the legend)", ylabel="RMSE")
        ax_bars.grid(axis="x", visible=False)
        for ax in (ax_curve, ax_bars):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.suptitle(f"Comparison of {len(runs)} runs")
    return fig
