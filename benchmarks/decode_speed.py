"""What the full decode costs against the reduced-scale (PIL ``draft``) decode it replaced.

Every image is now decoded in full, converted, and resized from its centred crop
(:func:`galaxyzoo_cli.data.images.load_image`), so that a JPEG and a PNG of the same pixels, and the
deployment recipe of docs/deploy.md, give the same model input. Earlier, JPEGs were decoded at
a reduced scale (DCT-domain downscaling) when the output needed no more. This times both ways on
the same files, one thread and ``--workers`` threads (as the cache and predict decode), at the
given inputs (default: the default model's, RGB crop 256 → 96 px, the fast recipe's, → 64 px,
and the notebook's, grey → 64 px). Prints a Markdown table: images/s (wall clock, best of two
passes), CPU milliseconds per image (process time, steady on a shared machine), and how far the
two decodes' pixels differ.

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

from galaxyzoo_cli.data.images import InputSpec, default_workers, load_image


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


def rate(
    decode: Callable[[Path, InputSpec], np.ndarray],
    paths: list[Path],
    spec: InputSpec,
    workers: int,
) -> tuple[float, float]:
    """Images/s decoding ``paths`` with ``workers`` threads, and CPU ms per image (best of two)."""
    best, cpu = math.inf, math.inf
    for _ in range(2):
        start, start_cpu = time.perf_counter(), time.process_time()
        if workers <= 1:
            for p in paths:
                decode(p, spec)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda p: decode(p, spec), paths, chunksize=64))
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return len(paths) / best, 1000 * cpu / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder of JPEGs")
    parser.add_argument("--n", type=int, default=2000, help="images to decode per pass")
    parser.add_argument(
        "--inputs", default="rgb96,rgb64,gray64", help="crop-256 inputs: rgbN or grayN, N px"
    )
    parser.add_argument("--workers", type=int, default=default_workers(), help="threads")
    args = parser.parse_args()
    paths = sorted(args.images.glob("*.jpg"))[: args.n]
    for p in paths:  # warm the file cache
        p.read_bytes()
    print(f"{len(paths)} JPEGs from {args.images}; threads: 1 and {args.workers}\n")
    print("| input | threads | draft decode (before) | full decode (now) | cost | pixels differ |")
    print("|---|---|---|---|---|---|")
    for name in args.inputs.split(","):
        gray, size = name.startswith("gray"), int(name.removeprefix("gray").removeprefix("rgb"))
        spec = InputSpec(1 if gray else 3, crop=256, size=size)
        diff = [
            np.abs(draft_decode(p, spec) - load_image(p, spec).astype(int)) for p in paths[:500]
        ]
        mean, most = np.mean([d.mean() for d in diff]), max(d.max() for d in diff)
        differ = f"mean {mean:.2f}, max {most} grey levels"
        for workers in sorted({1, args.workers}):
            (old, old_ms), (new, new_ms) = (
                rate(f, paths, spec, workers) for f in (draft_decode, load_image)
            )
            label = f"{'grey' if gray else 'RGB'} crop 256 → {size} px"
            print(
                f"| {label} | {workers} | {old:,.0f}/s, {old_ms:.2f} CPU ms | {new:,.0f}/s, "
                f"{new_ms:.2f} CPU ms | {new_ms / old_ms:.1f}× the CPU | {differ} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
