"""Compare training recipes on one data folder: validation RMSE and minutes per recipe.

Usage:
    python benchmarks/recipes.py --data-dir ../shared/realdata/gz5000 [--only notebook,default]

Every recipe holds out the last 10% of GalaxyIDs (the winner's split), so all are scored on the same
galaxies, over the labelled cells only. Prints a Markdown table. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from galaxyzoo_cli.settings import TrainConfig  # noqa: E402
from galaxyzoo_cli.training import train  # noqa: E402

NOTEBOOK = {
    # The seed notebook: ConvNet, grayscale crop 256 -> 64 px, one sigmoid per answer, RMSE loss,
    # Adam lr 1e-5, batch 64, 10 epochs, no augmentation, no schedule.
    "model": "convnet",
    "head": "sigmoid",
    "loss": "rmse",
    "optimizer": "adam",
    "lr": 1e-5,
    "weight_decay": 0.0,
    "schedule": "constant",
    "warmup_epochs": 0.0,
    "batch_size": 64,
    "epochs": 10,
    "augment": False,
    "patience": 0,
}

RECIPES: dict[str, dict[str, object]] = {
    "notebook": NOTEBOOK,
    "notebook-convnet-our-recipe": {"model": "convnet"},
    "default": {},
    "default-sigmoid-head": {"head": "sigmoid"},
    "default-no-augment": {"augment": False},
    "default-30-epochs": {"epochs": 30},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--only", default="", help="comma-separated recipe names")
    parser.add_argument("--runs-dir", type=Path, default=None)
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(RECIPES)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="recipes-"))
    print(f"runs in {runs_dir}")
    print(
        "| recipe | model | val RMSE | training-mean baseline | best epoch | minutes | images/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        settings = {"val_split": "last", "val_fraction": 0.1, "name": name, **RECIPES[name]}
        start = time.perf_counter()
        r = train(TrainConfig(**settings), data_dir=args.data_dir, runs_dir=runs_dir)  # type: ignore[arg-type]
        minutes = (time.perf_counter() - start) / 60
        print(
            f"| {name} | {r.model} | {r.best_val_rmse:.5f} | {r.baseline_val_rmse:.5f} | "
            f"{r.best_epoch}/{r.epochs_run} | {minutes:.1f} | {r.images_per_second:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
