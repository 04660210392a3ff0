"""The whole competition on one machine: a full-size rehearsal with synthetic galaxies.

Usage:
    python benchmarks/full_scale.py --dir /tmp/gz-full [--steps generate,check,cache,...]

Generates (or reuses) 61,578 labelled and 79,975 test synthetic galaxies in the Kaggle layout
(the real counts and sizes), then times each step as a user would run it, each in its own
process, and records its wall time, peak resident memory (RSS) and the disk it uses:

    generate   the synthetic folder (every core)
    check      `galaxyzoo check`: decode every image
    cache      the image cache of the training images, built from cold (default model's input)
    epoch      one training epoch of the default model, and of the fast recipe (warm cache),
               against the model's own compute on tensors already in memory
    evaluate   `galaxyzoo evaluate` of that run (6,158 validation galaxies)
    predict    `galaxyzoo predict` of the 79,975 test images: cold cache, warm, and --tta 8

Prints a Markdown table (docs/performance.md). Not a test: about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_TRAIN, N_TEST = 61_578, 79_975
CLI = [sys.executable, "-m", "galaxyzoo_cli"]


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; (wall seconds, its peak RSS in GB, stdout). Raises on failure. The peak
    is GNU time's maximum resident set size of that process."""
    with tempfile.NamedTemporaryFile(suffix=".time") as stats:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", stats.name, *args], env=env,
                              capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - start
        peak_kb = float(Path(stats.name).read_text().split()[-1])
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, peak_kb / 1e6, proc.stdout


def du(path: Path) -> float:
    """Disk used under ``path``, GB."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total / 1e9


def compute_only(model: str, n_images: int, batch: int = 64) -> float:
    """Seconds the default model's forward + backward + step take for ``n_images`` images
    already in memory as float tensors (with the batch augmentation): the floor of an epoch."""
    import torch

    from galaxyzoo_cli.data.transforms import augment_batch
    from galaxyzoo_cli.models import resolve_config
    from galaxyzoo_cli.models.galaxy_model import create_model

    config = resolve_config(model)
    net = create_model(config)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.rand(batch, config.input.channels, config.input.size, config.input.size)
    y = torch.rand(batch, 37)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = ((net(augment_batch(x, g)) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    steps = 30
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / (steps * batch) * n_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/gz-full"))
    parser.add_argument("--steps", default="generate,check,cache,epoch,evaluate,predict")
    parser.add_argument("--model", default=None, help="default: the default model")
    parser.add_argument("--fast", default="galaxynet-s", help="the fast recipe's model")
    parser.add_argument("--train", type=int, default=N_TRAIN, help="labelled galaxies (smoke runs)")
    parser.add_argument("--test", type=int, default=N_TEST, help="test images (smoke runs)")
    args = parser.parse_args()
    n_train, n_test = args.train, args.test
    steps = set(args.steps.split(","))
    data, work = args.dir / "data", args.dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GALAXYZOO_CACHE_DIR": str(work / "cache"), "OMP_WAIT_POLICY": "PASSIVE"}
    from galaxyzoo_cli.core.settings import TrainConfig

    model = args.model or TrainConfig().model
    rows: list[tuple[str, str, str, str, str]] = []

    def record(what: str, wall: float, peak: float, disk: str = "", note: str = "") -> None:
        rows.append((what, f"{wall:.0f} s", f"{peak:.2f} GB", disk, note))
        print(f"| {' | '.join(rows[-1])} |", flush=True)

    print("| step | wall | peak RSS | disk | note |\n|---|---|---|---|---|", flush=True)
    if "generate" in steps:
        wall, peak, _ = run([*CLI, "fetch", "--synthetic", str(n_train), "--test-images",
                             str(n_test), "--data-dir", str(data)], env)  # fmt: skip
        record(f"generate {n_train + n_test:,} synthetic galaxies", wall, peak,
               f"{du(data):.2f} GB", f"{(n_train + n_test) / wall:.0f} images/s")  # fmt: skip
    if "check" in steps:
        wall, peak, _ = run([*CLI, "check", "--data-dir", str(data)], env)
        record("check (decodes every image)", wall, peak, "", f"{(n_train + n_test) / wall:.0f}/s")
    if "cache" in steps:
        shutil.rmtree(work / "cache", ignore_errors=True)
        code = (
            "import sys; from pathlib import Path; "
            "from galaxyzoo_cli.data.cache import load_images; "
            "from galaxyzoo_cli.data.catalogue import list_images; "
            "from galaxyzoo_cli.models import "
            f"resolve_config; paths = list_images(Path({str(data)!r}) / 'images_training_rev1')[1];"
            f"load_images(paths, resolve_config({model!r}).input)"
        )
        wall, peak, _ = run([sys.executable, "-c", code], env)
        record(f"cache build, {n_train:,} training images ({model} input)", wall, peak,
               f"{du(work / 'cache'):.2f} GB", f"{n_train / wall:.0f} images/s")  # fmt: skip
    if "epoch" in steps:
        for name in (model, args.fast):
            wall, peak, out = run(
                [*CLI, "train", "--model", name, "--epochs", "1", "--data-dir", str(data),
                 "--runs-dir", str(work / "runs"), "--name", f"full-{name}", "--json"], env,
            )  # fmt: skip
            result = json.loads(out)
            epoch = result["n_train"] / result["images_per_second"]
            floor = compute_only(name, result["n_train"])
            note = f"epoch {epoch:.0f} s = {epoch / floor:.2f} × compute ({floor:.0f} s)"
            record(f"train 1 epoch, {name} ({result['n_train']:,} images)", wall, peak, "", note)
    run_dir = work / "runs" / f"full-{model}"
    if "evaluate" in steps:
        wall, peak, out = run([*CLI, "evaluate", str(run_dir), "--json"], env)
        record(f"evaluate ({json.loads(out)['n_images']:,} galaxies)", wall, peak)
    if "predict" in steps:
        for label, extra in (
            ("cold cache", []),
            ("warm cache", []),
            ("warm, --tta 8", ["--tta", "8"]),
        ):
            if label == "cold cache":
                clear = [*CLI, "cache", "clear", "--data-dir", str(data / "images_test_rev1")]
                subprocess.run(clear, env=env, check=True, capture_output=True)
            wall, peak, _ = run([*CLI, "predict", str(run_dir), "--out",
                                 str(work / f"sub-{len(rows)}.csv"), *extra], env)  # fmt: skip
            record(f"predict {n_test:,} test images, {label}", wall, peak, "",
                   f"{n_test / wall:.0f} images/s")  # fmt: skip


if __name__ == "__main__":
    main()
