"""What the full decode costs against the reduced-scale (PIL ``draft``) decode it replaced.

Every image is now decoded in full, converted, and resized from its centred crop
(:func:`galaxyzoo_cli.images.load_image`), so that a JPEG and a PNG of the same pixels, and the
deployment recipe of docs/deploy.md, give the same model input. Earlier, JPEGs were decoded at
a reduced scale (DCT-domain downscaling) when the output needed no more. This times both ways on
the same files, one thread and ``--workers`` threads (as the cache and predict decode), at the
given input specs (default: the default model's, RGB crop 256 → 96 px, and the fast recipe's,
→ 64 px), and prints a Markdown table of images/s and how far the two decodes' pixels differ.

    .venv/bin/python benchmarks/decode_speed.py --images DIR_OF_JPEGS [--n 2000] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from galaxyzoo_cli.images import InputSpec, default_workers, load_image


def draft_decode(path: Path, spec: InputSpec) -> np.ndarray:
    """The earlier decode (for comparison only): JPEGs drafted to the scale the
    output needs, then cropped and resized."""
    with Image.open(path) as im:
        width, height = im.size
        crop = spec.crop_side(width, height)
        out = spec.output_side(width, height)
        if im.format == "JPEG":
            need = out / crop
            im.draft(spec.mode, (math.ceil(width * need), math.ceil(height * need)))
        scale = im.size[0] / width
        img = im.convert(spec.mode)
    c = crop * scale
    left, top = (img.size[0] - c) / 2, (img.size[1] - c) / 2
    img = img.resize((out, out), Image.Resampling.BILINEAR, box=(left, top, left + c, top + c))
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def rate(decode: Callable[[Path, InputSpec], np.ndarray], paths: list[Path], spec: InputSpec,
         workers: int) -> float:  # fmt: skip
    """Images/s decoding ``paths`` with ``workers`` threads (best of two passes)."""
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        if workers <= 1:
            for p in paths:
                decode(p, spec)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda p: decode(p, spec), paths, chunksize=64))
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder of JPEGs")
    parser.add_argument("--n", type=int, default=2000, help="images to decode per pass")
    parser.add_argument("--sizes", default="96,64", help="output sides (RGB, crop 256)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="threads")
    args = parser.parse_args()
    paths = sorted(args.images.glob("*.jpg"))[: args.n]
    for p in paths:  # warm the file cache
        p.read_bytes()
    print(f"{len(paths)} JPEGs from {args.images}; threads: 1 and {args.workers}\n")
    print("| input | threads | draft decode (old) | full decode (now) | cost | pixels differ |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        spec = InputSpec(3, crop=256, size=size)
        diff = [
            np.abs(draft_decode(p, spec) - load_image(p, spec).astype(int)) for p in paths[:500]
        ]
        mean, most = np.mean([d.mean() for d in diff]), max(d.max() for d in diff)
        differ = f"mean {mean:.2f}, max {most} grey levels"
        for workers in sorted({1, args.workers}):
            old = rate(draft_decode, paths, spec, workers)
            new = rate(load_image, paths, spec, workers)
            print(f"| RGB crop 256 → {size} px | {workers} | {old:,.0f}/s | {new:,.0f}/s | "
                  f"{old / new:.2f}× the time | {differ} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
