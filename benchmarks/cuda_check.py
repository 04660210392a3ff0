"""One short script for a lent GPU: do the CUDA paths work, and how fast are they?

Usage (on the GPU machine, from the repository root, after `pip install -e .`):
    python benchmarks/cuda_check.py [--n 4000] [--epochs 3] [--device cuda]

Checks and prints, each in a line of a Markdown table:
- training galaxynet with bfloat16 autocast and without (images/s; images kept on the GPU);
- that both reach a validation RMSE below the training-mean baseline;
- predict images/s with TTA 1 and 8;
- with two or more GPUs, a 2-process torchrun (nccl) run, and that only rank 0 wrote a run folder.
It runs on `--device cpu` too (slowly), which is how it was checked without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from galaxyzoo_cli.core.settings import PredictSettings, TrainConfig
from galaxyzoo_cli.data.synthetic import generate
from galaxyzoo_cli.inference import predict
from galaxyzoo_cli.training.device import resolve_device
from galaxyzoo_cli.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gz-cuda-"))
    os.environ["GALAXYZOO_CACHE_DIR"] = str(work / "cache")
    data = work / "data"
    start = time.perf_counter()
    generate(data_dir=data, n_train=args.n, n_test=args.n // 4, seed=0)
    rows = [
        (
            "synthetic data",
            f"{args.n} + {args.n // 4} images",
            f"{time.perf_counter() - start:.0f} s",
        )
    ]
    if args.device.startswith("cuda"):
        rows.append(
            ("device", torch.cuda.get_device_name(0), f"{torch.cuda.device_count()} GPU(s)")
        )
    runs = {}
    for amp in (True, False):
        cfg = TrainConfig(epochs=args.epochs, batch_size=256, lr=4e-3, device=args.device, amp=amp)
        r = train(cfg, data_dir=data, runs_dir=work / "runs")
        runs[amp] = r.run_dir
        ok = "ok" if r.best_val_rmse < r.baseline_val_rmse else "NOT below baseline"
        rows.append(
            (
                f"train galaxynet, amp {amp}",
                f"{r.images_per_second:,.0f} images/s",
                f"val RMSE {r.best_val_rmse:.4f} vs mean {r.baseline_val_rmse:.4f}: {ok}",
            )
        )
    for tta in (1, 8):
        settings = PredictSettings(data_dir=data, out=work / "sub.csv", tta=tta)
        p = predict([runs[True]], settings, device=resolve_device(args.device))
        rows.append(
            (f"predict, tta {tta}", f"{p.images_per_second:,.0f} images/s", f"{p.n_images}")
        )
    if args.device.startswith("cuda") and torch.cuda.device_count() >= 2:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-port", str(port), "-m", "galaxyzoo_cli", "train", "--epochs", "2",
            "--batch-size", "256", "--data-dir", str(data), "--runs-dir", str(work / "ddp"),
            "--json",
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        folders = sorted(p.name for p in (work / "ddp").iterdir()) if proc.returncode == 0 else []
        note = f"exit {proc.returncode}, run folders {folders}"
        if proc.returncode == 0:
            note += f", {json.loads(proc.stdout)['images_per_second']:,.0f} images/s"
        rows.append(("torchrun nccl, 2 GPUs", f"{time.perf_counter() - start:.0f} s", note))
    print("| check | figure | note |\n|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
