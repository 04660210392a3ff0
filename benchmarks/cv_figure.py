"""The RMSE-versus-minutes figure of docs/results.md, drawn from the table in that file.

Usage:
    python benchmarks/cv_figure.py [--results docs/results.md]
        [--out docs/figures/cv-rmse-minutes.png]

Reads the cross-validation table (the rows `benchmarks/cv.py --table` prints) and plots each
recipe's mean CV RMSE (1 and 8 test-time views) against its training minutes per fold, so the
figure always shows exactly the documented figures. Rows without minutes (the baseline) are skipped.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_table(text: str) -> list[tuple[str, float, float | None, float]]:
    """(recipe, RMSE 1 view, RMSE 8 views or None, minutes) for each row of the CV table."""
    header = "| recipe | folds | CV RMSE |"
    lines = text.split(header, 1)[1].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = re.sub(r"[*`]", "", cells[0])
        rmse1 = re.match(r"[*]*([0-9.]+)", cells[2])
        rmse8 = re.match(r"[*]*([0-9.]+)", cells[3])
        minutes = re.match(r"[*]*([0-9.]+)", cells[-1])
        if rmse1 and minutes:
            eight = float(rmse8.group(1)) if rmse8 else None
            rows.append((name, float(rmse1.group(1)), eight, float(minutes.group(1))))
    return rows


def draw(rows: list[tuple[str, float, float | None, float]], out: Path) -> None:
    """The figure of ``rows`` (recipe, RMSE 1 view, RMSE 8 views or None, CPU-minutes per fold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    top = 0.125  # the notebook's recipe (~0.18) is named below the chart, not plotted
    off = []
    for name, rmse1, rmse8, minutes in rows:
        label = name.split(" (")[0].replace(" †", "")
        if rmse1 > top:
            off.append(f"{label} {rmse1:.3f}")
            continue
        ax.scatter(minutes, rmse1, color="#4C72B0")
        if rmse8 is not None:
            ax.scatter(minutes, rmse8, color="#DD8452", marker="^")
            ax.plot([minutes, minutes], [rmse1, rmse8], color="0.7", lw=0.8)
        ax.annotate(label, (minutes, rmse1), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if off:
        ax.text(0.01, 0.99, "off the chart: " + ", ".join(off), transform=ax.transAxes,
                va="top", fontsize=7)  # fmt: skip
    ax.set_ylim(None, top)
    ax.scatter([], [], color="#4C72B0", label="1 view")
    ax.scatter([], [], color="#DD8452", marker="^", label="8 views (TTA)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([1, 2, 3, 5, 10])
    ax.set(
        xlabel="training CPU-minutes per fold (1 thread)",
        ylabel="CV RMSE on gz5000 (folds: see the table)",
    )
    ax.set_title("RMSE against training time (lower left is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"{len(rows)} recipes: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results.md")
    figure = ROOT / "docs" / "figures" / "cv-rmse-minutes.png"
    parser.add_argument("--out", type=Path, default=figure)
    args = parser.parse_args()
    draw(read_table(args.results.read_text()), args.out)


if __name__ == "__main__":
    main()
