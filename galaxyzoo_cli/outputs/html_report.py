"""``galaxyzoo report``: one self-contained HTML page about one or several runs.

Everything is inside the file (figures and galaxy images as ``data:`` URIs, the style in a
``<style>`` element): it opens offline, makes no request, and can be mailed to a colleague.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli._version import __version__
from galaxyzoo_cli.core import provenance
from galaxyzoo_cli.core.files import write_text_atomic
from galaxyzoo_cli.core.metrics import score
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.schema import QUESTIONS
from galaxyzoo_cli.data.catalogue import Catalogue
from galaxyzoo_cli.data.images import load_image
from galaxyzoo_cli.outputs.drawing import (
    RunData,
    accuracy_figure,
    best_index,
    compare_figure,
    loss_figure,
    pyplot,
    scatter_figure,
    shown_questions,
    top_answers,
)
from galaxyzoo_cli.outputs.figure_data import collect_runs, runs_provenance
from galaxyzoo_cli.training.run_folder import Checkpoint, resolve_runs

if TYPE_CHECKING:
    import torch

_GALLERY = 6
_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #4C72B0; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; }
th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.settings td { text-align: left; } .muted { color: #777; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
           gap: .8em; }
.galaxy { background: #f6f6f6; padding: .5em; border-radius: 6px; font-size: .8em; }
.galaxy img { width: 100%; image-rendering: pixelated; border-radius: 3px; }
.good { color: #1a7f37; } .bad { color: #b42318; }
.provenance { font-size: .85em; } .provenance td { text-align: left; vertical-align: top; }
.compare td:nth-child(2), .compare th:nth-child(2) { text-align: left; }
.provenance table { margin: 0; } .provenance code { word-break: break-all; }
"""


@dataclass
class ReportResult:
    out: Path
    runs: list[Path]
    seconds: float
    provenance: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "runs": [str(r) for r in self.runs],
                "seconds": self.seconds, "provenance": self.provenance}  # fmt: skip

    def summary(self) -> str:
        return f"Wrote {self.out} ({len(self.runs)} run{'s' if len(self.runs) > 1 else ''})."


def report(
    runs: Sequence[str | os.PathLike[str]],
    *,
    out: Path | None = None,
    data_dir: Path | None = None,
    device: torch.device | None = None,
    use_cache: bool | None = None,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> ReportResult:
    """Write one HTML page about ``runs``: per run its settings, the metrics with baselines,
    per-question RMSE and accuracy, learning curves, predicted vs true, and the best and worst
    predicted validation galaxies as the model saw them; with several runs, a comparison first.
    Default ``out``: ``report.html`` in the (first) run's folder (a new name when that holds a
    report of other runs). Predictions are computed on ``device`` (default: the CPU)."""
    import time

    start = time.perf_counter()
    refs = resolve_runs(runs)
    collected = collect_runs(
        refs, data_dir=data_dir, device=device, use_cache=use_cache, workers=workers,
        reporter=reporter,
    )  # fmt: skip
    prov = runs_provenance("report", collected)
    names = [run.name for run in collected]
    title = "Galaxy Zoo run report: " + ", ".join(names)
    made = f"galaxyzoo-cli {__version__}, {prov['created']}"
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class=muted>{html.escape(made)}</p>"]
    if len(collected) > 1:
        body += ["<h2>Comparison</h2>", _comparison_table(collected),
                 _figure(compare_figure(collected), "validation RMSE of every run")]  # fmt: skip
    for run in collected:
        body += _run_section(run)
    page = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "<h2>Provenance</h2><p class=muted>How this page was made, and from which files "
        "(the checkpoints' SHA-256 identify them).</p>"
        + f"<table class=provenance>{_table_rows(prov)}</table></body></html>\n"
    )
    default = refs[0].run_dir / "report.html"
    target = provenance.output_path(default, out, prov, reporter)
    write_text_atomic(target, page)
    provenance.write_sidecar(target, prov)
    return ReportResult(target, [r.run_dir for r in collected], time.perf_counter() - start, prov)


def _figure(fig: Any, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _decimal(value: float | None, digits: int = 4) -> str:
    """A figure with ``digits`` decimals; – for none."""
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _html_value(value: Any) -> str:
    """A setting or provenance value as HTML: yes/no for booleans, – for none, lists one item a
    line, mappings as a nested table."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "–"
    if isinstance(value, dict):
        return f"<table>{_table_rows(value)}</table>" if value else "–"
    if isinstance(value, (list, tuple)):
        if not value:
            return "–"
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            return ", ".join(_html_value(v) for v in value)
        return "<br>".join(_html_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    text = html.escape(str(value))
    return f"<code>{text}</code>" if len(text) > 40 and " " not in text else text


def _table_rows(mapping: dict[str, Any]) -> str:
    """Table rows ``key | value`` (keys with underscores shown with spaces)."""
    return "".join(
        f"<tr><td>{html.escape(str(k).replace('_', ' '))}</td><td>{_html_value(v)}</td></tr>"
        for k, v in mapping.items()
    )


def _comparison_table(runs: Sequence[RunData]) -> str:
    rows = []
    for run in runs:
        rmse = score(run.val.pred, run.val.cat.labels).rmse if run.val else math.nan
        row = best_index(run)  # the kept epoch's RMSE (not the lowest: a bce run keeps by loss)
        best = run.metrics[row].get("val_rmse", math.nan) if row is not None else math.nan
        seen = f", {run.input.describe()}" if run.input is not None else ""
        rows.append(f"<tr><td>{html.escape(run.name)}</td>"
                    f"<td>{html.escape((run.model or '?') + seen)}</td><td>{len(run.metrics)}</td>"
                    f"<td>{_decimal(best)}</td><td>{_decimal(rmse)}</td></tr>")  # fmt: skip
    return ("<table class=compare><tr><th>run</th><th>model</th><th>epochs</th>"
            "<th>best validation RMSE (training)</th><th>validation RMSE (now)</th></tr>"
            + "".join(rows) + "</table>")  # fmt: skip


def _run_section(run: RunData) -> list[str]:
    assert run.checkpoint is not None
    out = [f"<h2>{html.escape(run.name)}</h2>", "<h3>Settings</h3>",
           _settings_table(run.checkpoint)]  # fmt: skip
    if run.val is not None:
        out += ["<h3>Validation</h3>", _metrics_tables(run)]
    else:
        out.append(f"<p class=muted>No validation figures: {html.escape(run.val_problem)}</p>")
    if run.metrics:
        out += ["<h3>Learning curves</h3>", _figure(loss_figure(run), "loss per epoch")]
    if run.val is not None:
        out += [
            "<h3>Per-question accuracy</h3>", _figure(accuracy_figure(run), "accuracy"),
            "<h3>Predicted vs true</h3>", _figure(scatter_figure(run), "predicted vs true"),
            *_galleries(run),
        ]  # fmt: skip
    return out


def _settings_table(ckpt: Checkpoint) -> str:
    settings = ckpt.settings.as_dict()
    shown = {
        "model": ckpt.model.name,
        "head": ckpt.model.head.value,
        "task": ckpt.model.task.describe(),
        "input": ckpt.model.input.describe(),
        "frozen features": ckpt.model.freeze,
        **{k: settings[k] for k in ("loss", "epochs", "batch_size", "lr", "weight_decay",
                                    "optimizer", "schedule", "ema", "augment", "val_split",
                                    "val_fraction", "seed", "patience")},
        "checkpoint": f"{ckpt.path.name}, epoch {ckpt.progress.epoch}",
        "data": str(ckpt.data_dir),
        "validation galaxies": len(ckpt.val_ids),
        "written by": f"galaxyzoo-cli {ckpt.version}",
    }  # fmt: skip
    return f"<table class=settings>{_table_rows(shown)}</table>"


def _metrics_tables(run: RunData) -> str:
    assert run.val is not None
    target = run.val.cat.labels
    model = score(run.val.pred, target)
    zeros = score(np.zeros_like(target), target)
    mean = score(np.broadcast_to(run.training_means, target.shape), target) if (
        run.training_means is not None) else None  # fmt: skip
    mean_row = (
        f"<tr><td>training mean</td><td>{_decimal(mean.rmse, 5)}</td><td></td></tr>" if mean else ""
    )
    top = (
        "<table><tr><th>predictor</th><th>Kaggle RMSE</th><th>galaxies</th></tr>"
        f"<tr><td>this model</td><td><b>{_decimal(model.rmse, 5)}</b></td>"
        f"<td>{model.n_images}</td></tr>"
        + mean_row
        + f"<tr><td>zeros</td><td>{_decimal(zeros.rmse, 5)}</td><td></td></tr></table>"
    )
    rows = []
    for q, scored in zip(QUESTIONS, model.questions, strict=True):
        base = _decimal(mean.questions[q.number - 1].rmse) if mean else "–"
        rows.append(
            f"<tr><td>Q{q.number} {html.escape(q.text)}</td><td>{_decimal(scored.rmse)}</td>"
            f"<td>{base}</td><td>{_decimal(scored.accuracy, 3)}</td>"
            f"<td>{scored.n_accuracy}</td></tr>"
        )
    per_q = (
        "<table><tr><th>question</th><th>RMSE</th><th>mean baseline</th><th>accuracy</th>"
        "<th>galaxies</th></tr>" + "".join(rows) + "</table>"
    )
    return top + per_q


def _galleries(run: RunData) -> list[str]:
    """The best and worst predicted validation galaxies, as the model saw them."""
    assert run.val is not None
    cat, pred = run.val.cat, run.val.pred
    mse = np.nanmean((pred - cat.labels) ** 2, axis=1)
    order = np.argsort(mse)
    out = []
    picks = (("Best predicted", order[:_GALLERY]), ("Worst predicted", order[::-1][:_GALLERY]))
    for title, pick in picks:
        cards = [_galaxy_card(cat, pred, int(galaxy), float(np.sqrt(mse[galaxy])), run)
                 for galaxy in pick]  # fmt: skip
        out += [f"<h3>{title} validation galaxies</h3>", "<div class=gallery>",
                *cards, "</div>"]  # fmt: skip
    return out


def _galaxy_card(cat: Catalogue, pred: np.ndarray, galaxy: int, rmse: float, run: RunData) -> str:
    """A validation galaxy as the model saw it, captioned like the gallery figure."""
    assert run.input is not None
    pixels = load_image(cat.paths[galaxy], run.input)
    from PIL import Image

    img = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    lines = []
    for answers in (top_answers(cat.labels[galaxy], pred[galaxy], number)
                    for number in shown_questions(cat.labels[galaxy])):  # fmt: skip
        number = answers.number
        lines.append(
            f"Q{number} true: {html.escape(answers.true_answer)} ({answers.true_fraction:.2f})<br>"
            f"<span class={'good' if answers.right else 'bad'}>Q{number} predicted: "
            f"{html.escape(answers.predicted_answer)} ({answers.predicted_fraction:.2f})</span>"
        )
    return (
        f'<div class=galaxy><img alt="GalaxyID {cat.ids[galaxy]}" '
        f'src="data:image/png;base64,{data}"><b>GalaxyID {cat.ids[galaxy]}</b> · '
        f"RMSE {rmse:.3f}<br>" + "<br>".join(lines) + "</div>"
    )
