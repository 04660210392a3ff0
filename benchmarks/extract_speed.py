"""How fast does `galaxyzoo fetch` unpack the competition archive?

Builds, in a temporary folder, an archive shaped like Kaggle's: one zip holding
images_training_rev1.zip and images_test_rev1.zip (61,578 + 79,975 JPEG-sized members of random,
i.e. incompressible, bytes like real JPEG data), training_solutions_rev1.zip and three benchmark
zips. Then times :func:`galaxyzoo_cli.data.archive.extract_competition` on it and prints seconds and
files/s. ``--scale 0.1`` builds a tenth of the members (and extrapolates, saying so).

    .venv/bin/python benchmarks/extract_speed.py [--scale 1.0] [--size 13000] [--stored]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zipfile
from pathlib import Path

from galaxyzoo_cli.data.archive import extract_competition
from galaxyzoo_cli.data.fetch import EXPECTED_TEST_IMAGES, EXPECTED_TRAIN_IMAGES


def _inner_zip(path: Path, folder: str, ids: range, size: int, compression: int) -> None:
    # Fresh random bytes per image: incompressible like JPEG data, also for the outer zip.
    with zipfile.ZipFile(path, "w", compression, compresslevel=1) as zf:
        for gid in ids:
            zf.writestr(f"{folder}/{gid}.jpg", os.urandom(size))


def build(root: Path, scale: float, size: int, compression: int) -> Path:
    n_train = max(1, round(EXPECTED_TRAIN_IMAGES * scale))
    n_test = max(1, round(EXPECTED_TEST_IMAGES * scale))
    inner = root / "inner"
    inner.mkdir()
    _inner_zip(
        inner / "images_training_rev1.zip",
        "images_training_rev1",
        range(100_000, 100_000 + n_train),
        size,
        compression,
    )
    _inner_zip(
        inner / "images_test_rev1.zip",
        "images_test_rev1",
        range(500_000, 500_000 + n_test),
        size,
        compression,
    )
    header = "GalaxyID," + ",".join(f"Class{i}" for i in range(37))
    rows = "\n".join(f"{100_000 + i}," + ",".join(["0.5"] * 37) for i in range(n_train))
    for name in (
        "training_solutions_rev1",
        "all_ones_benchmark",
        "all_zeros_benchmark",
        "central_pixel_benchmark",
    ):
        with zipfile.ZipFile(inner / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{name}.csv", header + "\n" + rows + "\n")
    outer = root / "galaxy-zoo-the-galaxy-challenge.zip"
    with zipfile.ZipFile(outer, "w", compression, compresslevel=1) as zf:
        for path in sorted(inner.iterdir()):
            zf.write(path, path.name)
            path.unlink()
    return outer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real counts")
    parser.add_argument("--size", type=int, default=13_000, help="bytes per image")
    parser.add_argument("--stored", action="store_true", help="store instead of deflate")
    parser.add_argument("--workers", type=int, default=None, help="writer threads")
    parser.add_argument("--dir", type=Path, default=None, help="temporary folder (default: system)")
    args = parser.parse_args()
    compression = zipfile.ZIP_STORED if args.stored else zipfile.ZIP_DEFLATED
    with tempfile.TemporaryDirectory(prefix="gz-extract-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        archive = build(root, args.scale, args.size, compression)
        print(
            f"built {archive.stat().st_size / 1e6:,.0f} MB archive in "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        stats = extract_competition(archive, root / "data", workers=args.workers)
        n = stats.n_files
        print(
            f"extracted {n:,} files ({stats.n_train:,} train, {stats.n_test:,} test) in "
            f"{stats.seconds:.1f} s: {n / stats.seconds:,.0f} files/s"
        )
        if args.scale != 1.0:
            full = EXPECTED_TRAIN_IMAGES + EXPECTED_TEST_IMAGES
            print(
                f"extrapolated to the full {full:,} images (scale {args.scale}): "
                f"{full / (n / stats.seconds):.0f} s"
            )


if __name__ == "__main__":
    main()
