"""Large inputs (224 px backbones): what each way of feeding them costs per image on this machine.

Usage:
    python benchmarks/large_inputs.py --data-dir ../shared/realdata/gz5000 [--n 1000]
        [--models resnet18,convnext_nano]

The full competition at 224 px RGB is 9.3 GB of pixels for the 61,578 training images (21 GB with
the 79,975 test images). The alternatives, measured on ``--n`` real JPEGs:

    decode      decoding a batch's JPEGs when it is needed (reduced-size decoding, 2 threads):
                no disk, paid every epoch
    cache read  a batch read from a memory-mapped pixel cache (random rows, from the page cache):
                150 KB of disk per image, paid once
    features    a frozen backbone's features computed once (forward only) and cached: 2-3 KB
                per image, then each epoch trains only the head
    train step  a fine-tuning step at 224 px (forward + backward + AdamW, batch 32): the compute
                every epoch pays whatever feeds it

Decoding on the GPU (torchvision.io.decode_jpeg on CUDA) needs a GPU and is not measured here.
Prints a Markdown table of images/s and per-image milliseconds. Not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from galaxyzoo_cli.core.progress import SILENT  # noqa: E402
from galaxyzoo_cli.data.cache import copy_rows  # noqa: E402
from galaxyzoo_cli.data.catalogue import list_images  # noqa: E402
from galaxyzoo_cli.data.images import InputSpec, decode_into  # noqa: E402
from galaxyzoo_cli.models import resolve_config  # noqa: E402
from galaxyzoo_cli.models.galaxy_model import create_model  # noqa: E402

SIDE = 224


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s | {1000 * seconds / n:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/realdata/gz5000"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--models", default="resnet18,convnext_nano")
    args = parser.parse_args()
    folder = args.data_dir / "images_training_rev1"
    paths = list_images(folder if folder.is_dir() else args.data_dir)[1][: args.n]
    n = len(paths)
    spec = InputSpec(3, crop=256, size=SIDE)
    print(f"{n} images, {SIDE} px RGB, crop 256, {torch.get_num_threads()} threads\n")
    print("| way | images/s | per image | note |\n|---|---|---|---|")

    pixels = np.empty((n, 3, SIDE, SIDE), np.uint8)
    decode_into(pixels[:64], paths[:64], spec, None, SILENT)  # warm the file cache
    start = time.perf_counter()
    decode_into(pixels, paths, spec, None, SILENT)
    print(f"| decode when needed | {rate(n, time.perf_counter() - start)} | no disk |")

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "pixels.npy"
        np.save(file, pixels)
        cached = np.load(file, mmap_mode="r")
        order = np.random.default_rng(0).permutation(n)
        start = time.perf_counter()
        for b in range(0, n, 64):
            batch = torch.from_numpy(copy_rows(cached, np.sort(order[b : b + 64])))
            batch = batch.float().div_(255)
        seconds = time.perf_counter() - start
        del batch, cached
        print(f"| pixel cache read (warm) | {rate(n, seconds)} | {pixels[0].nbytes / 1e3:.0f} KB "
              "of disk per image |")  # fmt: skip

    x = torch.from_numpy(pixels[:64]).float().div_(255)
    for name in args.models.split(","):
        config = resolve_config(f"timm/{name}" if "/" not in name else name, freeze=False,
                                image_size=SIDE)  # fmt: skip
        model = create_model(config).eval()
        with torch.no_grad():
            model.embed(x[:8])
            start = time.perf_counter()
            feats = model.embed(x)
            seconds = time.perf_counter() - start
        print(f"| {name}: frozen features (forward) | {rate(len(x), seconds)} | "
              f"{feats.shape[1] * 4 / 1e3:.1f} KB per image cached |")  # fmt: skip
        model.train()
        opt = torch.optim.AdamW(model.parameters(), 1e-4)
        xb, y = x[:32], torch.rand(32, 37)
        for i in range(4):
            if i == 1:
                start = time.perf_counter()
            loss = ((model(xb) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"| {name}: fine-tuning step | {rate(3 * len(xb), time.perf_counter() - start)} "
              "| the compute floor of an epoch |")  # fmt: skip


if __name__ == "__main__":
    main()
