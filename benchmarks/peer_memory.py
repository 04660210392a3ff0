"""Peak memory and wall time of a training run, side by side with a peer tool (Zoobot).

Usage:
    python benchmarks/peer_memory.py --data-dir ../shared/realdata/gz5000 [--sizes 64,128]
        [--epochs 2] [--peer "python my_zoobot_run.py --size {size} --epochs {epochs}"]

The comparison the issue tracker set: timm's convnext_nano from random initialisation, batch 64,
``--epochs`` epochs over the galaxies of ``--data-dir``, 2 CPU threads, at each input size. Each
run is its own process, timed with GNU time (wall, maximum resident set size). ``--peer`` is a
command template for the other tool's equivalent run ({size}, {epochs}, {data_dir} are filled in);
without it, only galaxyzoo's figures are printed next to the peer figures recorded in the table
below (Zoobot 2.9, measured on this kind of machine when the issue was filed).

Prints a Markdown table. Not a test: minutes per size.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from full_scale import run  # benchmarks/, beside this script: GNU time's wall and peak RSS

# Zoobot 2.9, convnext_nano from scratch, batch 64, 2 epochs on gz5000, 2 threads: as recorded in
# the issue that asked for this comparison (not re-measured by this script).
RECORDED_PEER = {64: (210.0, 1.8), 128: (510.0, 3.17)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/realdata/gz5000"))
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--peer", default=None, help="the peer's command template")
    parser.add_argument("--work", type=Path, default=None, help="runs and cache (default: a temp)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="gz-peer-"))
    env = {**os.environ, "OMP_NUM_THREADS": "2", "GALAXYZOO_CACHE_DIR": str(work / "cache"),
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    print("| input | tool | wall | peak RSS | note |\n|---|---|---|---|---|", flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, "-m", "galaxyzoo_cli", "train", "--model", "timm/convnext_nano",
               "--no-pretrained", "--image-size", str(size), "--batch-size", "64", "--epochs",
               str(args.epochs), "--data-dir", str(args.data_dir), "--runs-dir",
               str(work / "runs"), "--name", f"peer-{size}", "--json"]  # fmt: skip
        wall, peak, out = run(cmd, env)
        result = json.loads(out)
        note = f"{result['n_train']:,} training images, {result['images_per_second']:.0f} images/s"
        print(f"| {size} px | galaxyzoo | {wall:.0f} s | {peak:.2f} GB | {note} |", flush=True)
        if args.peer:
            line = args.peer.format(size=size, epochs=args.epochs, data_dir=args.data_dir)
            wall, peak, _ = run(shlex.split(line), env)
            print(f"| {size} px | peer | {wall:.0f} s | {peak:.2f} GB | `{line}` |", flush=True)
        elif size in RECORDED_PEER:
            wall, peak = RECORDED_PEER[size]
            print(f"| {size} px | Zoobot 2.9 (recorded) | {wall:.0f} s | {peak:.2f} GB | "
                  "from the issue, not re-measured |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
