"""Trying finetune recipes on draws that the learning curve (finetune_curve.py) does not use.

Each (variant, N, draw) finetunes a run on N random galaxies of ``realdata/spirals`` and scores
the other galaxies with 1 and with 8 test-time views (``auc1``, ``auc8``). The draws are those of
finetune_curve.py shifted by ``--seed-offset`` (100 by default: draws 100-104, none of the curve's
0-4), so a recipe picked here can then be checked on the curve's draws (``--seed-offset 0``)
without having been tuned on them. A variant is a JSON dict of ``finetune_config`` options;
``--probe`` adds the linear probe on the run's embeddings of 1 and of 8 views (``probe-tta1``,
``probe-tta8``). One JSON line per result, appended as it comes:

    python benchmarks/finetune_tune.py run --run RUN --data ../shared/realdata/spirals \
        --sizes 25,200 --probe --variant base='{}' \
        --variant all20='{"val_fraction": 0, "epochs": 20}'
    python benchmarks/finetune_tune.py table --against base   # mean ± sd; paired differences
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.finetune_curve import logistic_auc, spirals
from galaxyzoo_cli.core.tasks import roc_auc
from galaxyzoo_cli.inference import load_run, predict_paths
from galaxyzoo_cli.training.finetune import finetune, finetune_config

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "finetune_tune.jsonl"


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    ids, flags, paths = spirals(data)
    work = HERE / "results" / "finetune_tune"
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    dev = torch.device("cpu")
    variants = [(v.split("=", 1)[0], json.loads(v.split("=", 1)[1])) for v in args.variant]
    emb = {}
    if args.probe:
        base = load_run(args.run, dev)
        emb = {
            t: predict_paths(base, paths, dev, tta=t, embeddings=True).embeddings for t in (1, 8)
        }

    def write(record: dict[str, Any]) -> None:
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    for d in range(args.draws):
        draw = d + args.seed_offset
        for n in (int(s) for s in args.sizes.split(",")):
            rng = np.random.default_rng([draw, n])  # as finetune_curve.py's draw `draw`
            train = np.sort(rng.choice(len(ids), n, replace=False))
            test = np.setdiff1d(np.arange(len(ids)), train)
            csv = work / f"labels-n{n}-draw{draw}-{os.getpid()}.csv"
            csv.write_text("id,spiral\n" + "".join(f"{ids[i]},{flags[i]}\n" for i in train))
            for t, e in emb.items():
                assert e is not None
                auc = logistic_auc(e[train], flags[train], e[test], flags[test])
                write({"variant": f"probe-tta{t}", "n": n, "draw": draw, "auc1": auc})
            for name, options in variants:
                start = time.perf_counter()
                config = finetune_config(seed=draw, name=f"{name}-n{n}-d{draw}-{os.getpid()}",
                                         **options)  # fmt: skip
                result = finetune(args.run, labels=csv, images=data / "images", config=config,
                                  runs_dir=work / "runs")  # fmt: skip
                tuned = load_run(result.run_dir, dev)
                aucs = {}
                for t in (1, 8):
                    pred = predict_paths(tuned, paths, dev, tta=t).values[:, 0]
                    aucs[f"auc{t}"] = roc_auc(pred[test], flags[test])
                write({"variant": name, "n": n, "draw": draw, **aucs,
                       "epochs": result.epochs_run, "best_epoch": result.best_epoch,
                       "seconds": time.perf_counter() - start})  # fmt: skip
                shutil.rmtree(result.run_dir)


def table(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in Path(args.out).read_text().splitlines()]
    by: dict[tuple[str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by[(r["variant"], r["n"])][r["draw"]] = r
    for (variant, n), draws in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = []
        for key in ("auc1", "auc8"):
            x = [r[key] for r in draws.values() if key in r]
            if x:
                sd = np.std(x, ddof=1) if len(x) > 1 else 0.0
                cells.append(f"{key} {np.mean(x):.4f} ± {sd:.4f} ({len(x)})")
        ref = by.get((args.against, n), {}) if args.against else {}
        diff = [r["auc1"] - ref[k]["auc1"] for k, r in draws.items() if k in ref]
        if diff and variant != args.against:
            cells.append(f"- {args.against}: {np.mean(diff):+.4f}, better on "
                         f"{sum(x > 0 for x in diff)}/{len(diff)}")  # fmt: skip
        print(f"N = {n:4d}  {variant:12s}  " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--run", required=True, help="the run to finetune (e.g. gz5000-fast)")
    p.add_argument("--data", required=True, help="realdata/spirals")
    p.add_argument("--variant", action="append", default=[], help="NAME=JSON options")
    p.add_argument("--sizes", default="25,200")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--seed-offset", type=int, default=100)
    p.add_argument("--probe", action="store_true", help="also the linear probes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS))
    p.set_defaults(func=run)
    p = sub.add_parser("table")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--against", help="a variant: paired differences of auc1 on the same draws")
    p.set_defaults(func=table)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
