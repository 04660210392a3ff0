"""The data path, measured side by side with the seed notebook's, on the same images in one run.

Usage:
    python benchmarks/pipeline.py --data-dir ../shared/realdata/gz5000 [--n 5000] [--epochs 2]

Prints a Markdown table:
- images/s delivered by the notebook's per-image pipeline (plt.imread + PIL/torchvision transforms
  in a DataLoader without workers), grayscale and full colour;
- images/s of ours: a cold cache (decode and store) and a warm one (batches sliced from memory);
- cache build time per image and size, extrapolated to the 141,553 Kaggle images;
- seconds per training epoch of the notebook's ConvNet configuration (grayscale, crop 256, 64 px,
  batch 64) with the notebook's data path and with ours, against the model's own compute time on
  in-memory tensors;
- predict images/s and peak memory (measured in a child process) over a folder of test images.
Not a test: it takes minutes.
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from galaxyzoo_cli.data.cache import load_images  # noqa: E402
from galaxyzoo_cli.data.catalogue import load_catalogue  # noqa: E402
from galaxyzoo_cli.data.images import InputSpec  # noqa: E402

KAGGLE_IMAGES = 141_553
KAGGLE_TEST = 79_975
NOTEBOOK_PREP = InputSpec(channels=1, crop=256, size=64)


class NotebookDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The seed notebook's data path: plt.imread, then a PIL/torchvision chain per item."""

    def __init__(self, paths: list[Path], labels: np.ndarray, gray: bool) -> None:
        from torchvision import transforms as T

        self.paths, self.labels = paths, labels
        steps = [T.Grayscale()] if gray else []
        self.transform = T.Compose([*steps, T.CenterCrop(256), T.Resize(64), T.ToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        import matplotlib.pyplot as plt
        from PIL import Image

        img = Image.fromarray(plt.imread(self.paths[i]))
        return self.transform(img), torch.from_numpy(np.nan_to_num(self.labels[i]))


def notebook_loader(
    paths: list[Path], labels: np.ndarray, gray: bool
) -> torch.utils.data.DataLoader:  # type: ignore[type-arg]
    ds = NotebookDataset(paths, labels, gray)
    return torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=0)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def time_notebook_pipeline(paths: list[Path], labels: np.ndarray, gray: bool) -> float:
    start = time.perf_counter()
    for _ in notebook_loader(paths, labels, gray):
        pass
    return time.perf_counter() - start


def warm_delivery(images: np.ndarray, batch: int = 64) -> tuple[int, float]:
    """Batches as the training loop takes them: shuffled indices, uint8 -> float tensors."""
    x = np.asarray(images)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    n = 0
    for _ in range(3):
        perm = torch.randperm(len(x), generator=gen).numpy()
        for s in range(0, len(x), batch):
            idx = np.sort(perm[s : s + batch])
            t = torch.from_numpy(x[idx]).float().div_(255.0)
            n += len(t)
    return n, time.perf_counter() - start


def model_compute(x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    """Seconds per epoch of the notebook ConvNet's forward+backward on in-memory tensors."""
    from galaxyzoo_cli.models import resolve_config
    from galaxyzoo_cli.models.galaxy_model import create_model

    model = create_model(resolve_config("convnet", head="sigmoid"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    start = time.perf_counter()
    for _ in range(epochs):
        for s in range(0, len(x), 64):
            loss = ((model(x[s : s + 64]) - y[s : s + 64]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


def notebook_epoch(paths: list[Path], labels: np.ndarray, epochs: int) -> float:
    """Seconds per epoch of the notebook: its data path feeding the ConvNet."""
    from galaxyzoo_cli.models import resolve_config
    from galaxyzoo_cli.models.galaxy_model import create_model

    model = create_model(resolve_config("convnet", head="sigmoid"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    loader = notebook_loader(paths, labels, gray=True)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = ((model(xb) - yb.float()) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


def our_training(data_dir: Path, n: int, epochs: int, runs: Path) -> tuple[float, float]:
    """(seconds per epoch, seconds for the whole first run incl. the cache build) with train()."""
    from galaxyzoo_cli.core.settings import TrainConfig
    from galaxyzoo_cli.training.loop import train
    from galaxyzoo_cli.training.run_folder import read_metrics

    config = TrainConfig(
        model="convnet",
        head="sigmoid",
        loss="rmse",
        optimizer="adam",
        lr=1e-5,
        weight_decay=0.0,
        schedule="constant",
        warmup_epochs=0.0,
        batch_size=64,
        epochs=epochs,
        augment=False,
        patience=0,
        val_fraction=0.0,
        limit=n,
        device="cpu",
    )
    start = time.perf_counter()
    result = train(config, data_dir=data_dir, runs_dir=runs)
    total = time.perf_counter() - start
    rows = read_metrics(result.run_dir)
    return float(np.mean([r["seconds"] for r in rows])), total


def predict_in_child(run: Path, images: Path, out: Path, tta: int, cache: bool) -> dict[str, float]:
    code = (
        "import json, resource, sys, time;"
        "from pathlib import Path;"
        "from galaxyzoo_cli.inference import predict;"
        "from galaxyzoo_cli.core.settings import PredictSettings;"
        f"r = predict([Path({str(run)!r})], PredictSettings(images=Path({str(images)!r}),"
        f" out=Path({str(out)!r}), tta={tta}, cache={cache}));"
        "print(json.dumps({'seconds': r.seconds, 'n': r.n_images,"
        " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=5000, help="images to use")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--predict-images", type=int, default=20_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gz-bench-"))
    os.environ["GALAXYZOO_CACHE_DIR"] = str(work / "cache")
    cat = load_catalogue(args.data_dir)
    n = min(args.n, len(cat))
    paths, labels = cat.paths[:n], cat.labels[:n]
    rows: list[tuple[str, str, str]] = []
    print(
        f"{n} images from {args.data_dir}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; scratch {work}",
        flush=True,
    )

    # 1. Images per second to the model, without a model.
    nb_gray = time_notebook_pipeline(paths, labels, gray=True)
    nb_rgb = time_notebook_pipeline(paths, labels, gray=False)
    rows.append(("notebook pipeline, grayscale 64 px", rate(n, nb_gray), "plt.imread + PIL chain"))
    rows.append(("notebook pipeline, RGB 64 px", rate(n, nb_rgb), ""))
    start = time.perf_counter()
    images = load_images(paths, NOTEBOOK_PREP)
    cold = time.perf_counter() - start
    rows.append(
        ("ours, cold cache (decode + store)", rate(n, cold), f"{cold / nb_gray:.2f}× the time")
    )
    start = time.perf_counter()
    load_images(paths, NOTEBOOK_PREP)  # a warm lookup: hash the file list, map the array
    lookup = time.perf_counter() - start
    delivered, warm = warm_delivery(images)
    nb_rate = n / nb_gray
    rows.append(
        (
            "ours, warm cache (no augmentation)",
            rate(delivered, warm),
            f"{delivered / warm / nb_rate:.0f}× the notebook; lookup {lookup:.2f} s",
        )
    )
    per_image = cold / n
    size = images.nbytes
    rows.append(
        (
            "cache build, per image (2 threads)",
            f"{per_image * 1e3:.3f} ms",
            f"all {KAGGLE_IMAGES:,}: {per_image * KAGGLE_IMAGES:.0f} s, "
            f"{size / n * KAGGLE_IMAGES / 1e6:.0f} MB",
        )
    )

    # 2. The notebook's ConvNet configuration: one epoch.
    x = torch.from_numpy(np.array(images)).float().div(255.0)
    y = torch.from_numpy(np.nan_to_num(labels))
    compute = model_compute(x, y, args.epochs)
    nb_epoch = notebook_epoch(paths, labels, args.epochs)
    shutil.rmtree(work / "cache")
    ours_epoch, ours_first_run = our_training(args.data_dir, n, args.epochs, work / "runs")
    nb_first = nb_epoch * args.epochs
    rows.append(("ConvNet compute only (in-memory tensors)", f"{compute:.2f} s/epoch", "the floor"))
    rows.append(("ConvNet epoch, notebook data path", f"{nb_epoch:.2f} s/epoch", ""))
    rows.append(
        (
            "ConvNet epoch, ours (warm)",
            f"{ours_epoch:.2f} s/epoch",
            f"{ours_epoch / compute:.2f}× compute; {nb_epoch / ours_epoch:.1f}× faster",
        )
    )
    rows.append(
        (
            f"first run, {args.epochs} epochs incl. cache build",
            f"{ours_first_run:.1f} s",
            f"notebook {nb_first:.1f} s: {nb_first / ours_first_run:.1f}× faster",
        )
    )

    # 3. predict over a large folder, in a child process to measure its peak memory: the
    # notebook's ConvNet (just trained) and our default model (one quick epoch: speed only).
    from galaxyzoo_cli.core.settings import TrainConfig
    from galaxyzoo_cli.training.loop import train

    convnet_run = next(p for p in (work / "runs").iterdir() if p.is_dir())
    default_run = train(
        TrainConfig(epochs=1, limit=n, device="cpu"),
        data_dir=args.data_dir,
        runs_dir=work / "runs2",
    ).run_dir
    test_dir = work / "test"
    test_dir.mkdir()
    link = os.link if os.stat(paths[0]).st_dev == os.stat(work).st_dev else shutil.copyfile
    for i in range(args.predict_images):
        link(paths[i % n], test_dir / f"{100000 + i}.jpg")
    cases = [
        ("ConvNet", convnet_run, 1, False),
        ("ConvNet", convnet_run, 1, True),
        ("ConvNet", convnet_run, 1, True),
        ("ConvNet", convnet_run, 8, True),
        ("galaxynet (default)", default_run, 1, True),
        ("galaxynet (default)", default_run, 1, True),
        ("galaxynet (default)", default_run, 8, True),
    ]
    built: set[Path] = set()
    for label, run, tta, cache in cases:
        state = "no cache" if not cache else ("warm cache" if run in built else "cold cache")
        built.update([run] if cache else [])
        r = predict_in_child(run, test_dir, work / "sub.csv", tta, cache)
        ips = r["n"] / r["seconds"]
        rows.append(
            (
                f"predict {label}, tta {tta}, {state}",
                f"{ips:,.0f}/s",
                f"{r['n']:,} images, peak RSS {r['peak_rss_mb']:.0f} MB; "
                f"{KAGGLE_TEST:,} test images: {KAGGLE_TEST / ips:.0f} s",
            )
        )

    print("\n| measurement | figure | note |\n|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
