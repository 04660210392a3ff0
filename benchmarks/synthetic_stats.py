"""Compare synthetic galaxies with real ones: speed, JPEG size, image statistics, label statistics.

Not a test: it needs the real data of ``/work/shared/realdata`` (override with ``--real``), which
users of the tool do not have. Usage::

    python benchmarks/synthetic_stats.py [--n 2000] [--images 400] [--seed 0]

The image statistics are those quoted in DOMAIN.md, measured the same way on both sides:

- sky: median of the four 40x40 corners per channel; sky sigma: the standard deviation of their
  grey (channel mean) values;
- central peak: the brightest channel value in the central 21x21 box;
- central RGB: the mean of the central 21x21 pixels per channel;
- radius at 10%: where the azimuthal mean of the grey light above the sky first falls below 10% of
  its central value (r < 2);
- 3-sigma fraction: pixels whose grey value is 3 sky sigmas above the grey sky;
- R:G:B: summed light above the sky over those pixels, relative to G.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from galaxyzoo_cli.core import schema
from galaxyzoo_cli.data import catalogue as data
from galaxyzoo_cli.data.synthetic import generate

REAL = Path("/work/shared/realdata")
_SIDE = 424
_yy, _xx = np.mgrid[0:_SIDE, 0:_SIDE]
_R = np.hypot(_yy - (_SIDE - 1) / 2, _xx - (_SIDE - 1) / 2).astype(np.int64)
_R_COUNT = np.bincount(_R.ravel())


def image_stats(path: Path) -> dict[str, np.ndarray | float]:
    """The DOMAIN.md statistics of one 424x424 RGB image (see the module docstring)."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    corners = np.concatenate(
        [a[:40, :40], a[:40, -40:], a[-40:, :40], a[-40:, -40:]], axis=0
    ).reshape(-1, 3)
    sky = np.median(corners, axis=0)
    grey = a.mean(axis=2)
    grey_corners = corners.mean(axis=1)
    grey_sky = np.median(grey_corners)
    sigma = grey_corners.std() + 1e-3
    c = _SIDE // 2
    above = grey - grey_sky
    profile = np.bincount(_R.ravel(), weights=above.ravel()) / _R_COUNT
    centre = above[_R < 2].mean()
    below = np.flatnonzero(profile < 0.1 * centre)
    mask = above > 3 * sigma
    light = (a - sky)[mask].sum(axis=0)
    return {
        "sky": sky,
        "sky_sigma": float(sigma),
        "peak": float(a[c - 10 : c + 11, c - 10 : c + 11].max()),
        "centre_rgb": a[c - 10 : c + 11, c - 10 : c + 11].reshape(-1, 3).mean(axis=0),
        "r10": float(below[0]) if below.size else float(_R.max()),
        "frac3sigma": float(mask.mean()),
        "rgb_ratio": light / max(light[1], 1e-9),
    }


def summarise(paths: list[Path]) -> dict[str, str]:
    stats = [image_stats(p) for p in paths]

    def col(key: str) -> np.ndarray:
        return np.array([s[key] for s in stats], dtype=np.float64)

    def fmt(v: np.ndarray) -> str:
        return "(" + ", ".join(f"{x:.2f}" for x in np.atleast_1d(v)) + ")"

    ratio = col("rgb_ratio")
    return {
        "sky level (median RGB)": fmt(np.median(col("sky"), axis=0)),
        "sky sigma (grey, median)": f"{np.median(col('sky_sigma')):.2f}",
        "central peak p10/p50/p90": fmt(np.percentile(col("peak"), [10, 50, 90])),
        "central RGB (mean)": fmt(col("centre_rgb").mean(axis=0)),
        "10% radius p10/p50/p90": fmt(np.percentile(col("r10"), [10, 50, 90])),
        "3-sigma pixel fraction (mean)": f"{col('frac3sigma').mean():.4f}",
        "R:G:B above sky (median)": fmt(np.median(ratio, axis=0)),
        "mean JPEG bytes": f"{np.mean([os.path.getsize(p) for p in paths]):.0f}",
    }


def label_tables(synthetic: np.ndarray, real: np.ndarray) -> None:
    # KS: the largest gap between the two columns' distribution functions (0 = same distribution).
    grid = np.linspace(0.0, 1.0, 201)
    print(f"\n{'column':<11}{'mean syn':>9}{'real':>8}{'diff':>8}{'KS':>7}")
    for i, name in enumerate(schema.COLUMNS):
        s, r = synthetic[:, i], real[:, i]
        ks = np.abs(
            np.searchsorted(np.sort(s), grid, side="right") / len(s)
            - np.searchsorted(np.sort(r), grid, side="right") / len(r)
        ).max()
        print(f"{name:<11}{s.mean():>9.3f}{r.mean():>8.3f}{s.mean() - r.mean():>+8.3f}{ks:>7.3f}")
    print(f"\n{'question':<9}{'reached syn':>12}{'real':>7}{'  >0.5 syn':>11}{'real':>7}")
    rs, rr = schema.reached(synthetic), schema.reached(real)
    hs, hr = schema.reached(synthetic, 0.5), schema.reached(real, 0.5)
    for q in schema.QUESTIONS:
        i = q.number - 1
        print(
            f"Q{q.number:<8}{rs[:, i].mean():>12.3f}{rr[:, i].mean():>7.3f}"
            f"{hs[:, i].mean():>11.3f}{hr[:, i].mean():>7.3f}"
        )
    mean_rmse = np.sqrt(((real - real.mean(axis=0)) ** 2).mean())
    syn_rmse = np.sqrt(((synthetic - synthetic.mean(axis=0)) ** 2).mean())
    print(f"\npredict-the-mean RMSE on itself: synthetic {syn_rmse:.4f}, real {mean_rmse:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic galaxies to generate")
    parser.add_argument("--images", type=int, default=400, help="images to measure on each side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=Path, default=REAL)
    args = parser.parse_args()
    # One core: the figure quoted is single-threaded speed.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synthetic"
        t0, cpu0 = time.perf_counter(), time.process_time()
        result = generate(out, n_train=args.n, n_test=0, seed=args.seed)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        # CPU time is the figure to quote on a shared machine: wall time includes waiting.
        print(
            f"generated {args.n} galaxies in {seconds:.1f} s wall, {cpu:.1f} s CPU: "
            f"{args.n / seconds:.0f} images/s wall, {args.n / cpu:.0f} images/s per CPU-second"
        )
        _, syn_paths = data.list_images(out / data.TRAIN_IMAGES)
        syn_labels = data.read_labels(out / data.LABELS_CSV).values.astype(np.float64)
        print(result.summary())
        step = max(1, len(syn_paths) // args.images)
        syn = summarise(syn_paths[::step][: args.images])
        sizes = [os.path.getsize(p) for p in syn_paths]
        syn["mean JPEG bytes"] = f"{np.mean(sizes):.0f}"

    real_dir = args.real / "gz5000" / data.TRAIN_IMAGES
    if not real_dir.is_dir():
        sys.exit(f"{real_dir}: real images not found; pass --real")
    _, real_paths = data.list_images(real_dir)
    step = max(1, len(real_paths) // args.images)
    real = summarise(real_paths[::step][: args.images])
    print(f"\n{'statistic':<32}{'synthetic':>28}{'real (gz5000)':>28}")
    for key in syn:
        print(f"{key:<32}{syn[key]:>28}{real[key]:>28}")

    real_labels = data.read_labels(args.real / "labels-only-11919.csv").values.astype(np.float64)
    label_tables(syn_labels, real_labels)


if __name__ == "__main__":
    main()
