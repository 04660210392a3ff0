"""The offline galaxy generator: labelled synthetic galaxies in the Kaggle layout.

Each galaxy is drawn from physical parameters (:func:`sample_galaxy`), rendered from them as an
SDSS-like 424x424 colour image (:mod:`galaxyzoo_cli.data.rendering`) and labelled by simulated
Galaxy Zoo volunteers who walk the decision tree while looking at the same parameters
(:func:`vote_fractions`). So the labels are learnable from the pixels, obey the tree sums exactly,
and disagree the way real volunteers do. :func:`generate` writes a whole data folder (see
:mod:`galaxyzoo_cli.data.catalogue` for the layout) plus a ``SYNTHETIC.json`` marker that tells
synthetic data apart from the real download.

Everything is deterministic: galaxy ``i`` of the training set is drawn from its own generator seeded
by ``(seed, 0, i)`` (test galaxies by ``(seed, 1, i)``), so the same request gives byte-identical
files and galaxy ``i`` does not depend on how many galaxies are generated.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.files import install_entries, write_json_atomic
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.schema import N_OUTPUTS, QUESTIONS, volunteer_reach
from galaxyzoo_cli.data.catalogue import LABELS_CSV, TEST_IMAGES, TRAIN_IMAGES, write_labels
from galaxyzoo_cli.data.images import default_workers
from galaxyzoo_cli.data.rendering import (
    BULGE_SHAPES,
    KINDS,
    ODD_FEATURES,
    GalaxyParams,
    render_image,
)

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would give different files."""

MARKER = "SYNTHETIC.json"
JPEG_QUALITY = 70

# GalaxyIDs: 6-digit integers in [_ID_MIN, _ID_MIN + _ID_SPAN). Galaxy i gets the (2i)-th (train) or
# (2i+1)-th (test) value of a seeded permutation of that range, so IDs are unique, train and test
# are disjoint, and an ID does not depend on the number of galaxies generated.
_ID_MIN = 100008
_ID_SPAN = 999996 - _ID_MIN + 1
MAX_GALAXIES = _ID_SPAN // 2


def sample_galaxy(rng: np.random.Generator) -> GalaxyParams:
    """Draw one galaxy's parameters from a population tuned to look like the Kaggle galaxies."""
    kind = str(rng.choice(KINDS, p=[0.36, 0.51, 0.12, 0.01]))
    angle = float(rng.uniform(0.0, math.pi))
    radius = float(np.exp(rng.normal(math.log(16.0), 0.1)))
    brightness = float(252.0 - 135.0 * rng.beta(1.0, 2.6))
    # Fields range from empty to crowded: a Poisson count whose mean varies (gamma-distributed).
    neighbours = int(rng.poisson(rng.gamma(1.5, 3.3)))
    bulge_shape, bar, arms, pitch = "rounded", 0.0, 0, 20.0
    if kind == "smooth":
        featured = float(rng.beta(1.2, 6.0))
        # Ellipticals: mostly round to in-between, a few cigars.
        axis_ratio = float(np.clip(rng.beta(5.0, 1.5), 0.22, 1.0))
        bulge = float(1.0 - 0.6 * featured)
        radius *= 1.25
    elif kind == "disk":
        featured = float(rng.beta(3.5, 1.4))
        axis_ratio = float(rng.uniform(0.35, 1.0))
        bulge = float(rng.beta(2.0, 4.0))
        bar = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.4 else 0.0
        if rng.random() < 0.85:
            arms = int(rng.choice([1, 2, 3, 4, 5], p=[0.07, 0.7, 0.12, 0.06, 0.05]))
            pitch = float(rng.uniform(4.0, 27.0))
        radius *= 1.05
    elif kind == "edge_on":
        featured = float(rng.beta(5.0, 1.5))
        axis_ratio = float(rng.uniform(0.12, 0.3))
        bulge_shape = str(rng.choice(BULGE_SHAPES, p=[0.55, 0.12, 0.33]))
        bulge = 0.0 if bulge_shape == "none" else float(rng.uniform(0.15, 0.5))
        radius *= 1.4
    else:  # a star, or now and then a satellite trail
        featured, bulge = 0.0, 0.0
        axis_ratio = 1.0 if rng.random() < 0.75 else 0.02
        radius = 2.0
    odd, odd_strength = "", 0.0
    if kind != "star" and rng.random() < 0.33:
        odd = str(rng.choice(ODD_FEATURES, p=[0.16, 0.05, 0.12, 0.15, 0.16, 0.32, 0.04]))
        odd_strength = float(rng.uniform(0.25, 0.9))
    return GalaxyParams(
        kind=kind,
        featured=featured,
        radius=radius,
        brightness=brightness,
        axis_ratio=axis_ratio,
        angle=angle,
        bulge=bulge,
        bulge_shape=bulge_shape,
        bar=bar,
        arms=arms,
        pitch=pitch,
        odd=odd,
        odd_strength=odd_strength,
        odd_angle=float(rng.uniform(0.0, 2 * math.pi)),
        neighbours=neighbours,
        colour=float(rng.random()),
    )


# ---------------------------------------------------------------------------------------------
# Volunteer votes
# ---------------------------------------------------------------------------------------------


def _norm(p: list[float] | np.ndarray) -> np.ndarray:
    a = np.clip(np.asarray(p, dtype=np.float64), 1e-6, None)
    return a / a.sum()


def answer_probabilities(params: GalaxyParams) -> list[np.ndarray]:
    """For each of the 11 questions, the probability of each answer for a volunteer who reaches it.

    The probabilities follow what the image shows (the parameters) plus a floor of confusion, so
    labels are learnable from the pixels but never certain.
    """
    p = params
    f = p.featured
    # Q1 smooth / features / star: stars are clear; faint structure splits the vote.
    if p.kind == "star":
        q1 = _norm([0.12, 0.03, 0.85])
    else:
        feat = 0.008 + 0.95 * f
        q1 = _norm([1.0 - feat - 0.018, feat, 0.018])
    if p.kind == "edge_on":  # thicker disks look less surely edge-on
        edge = 0.97 - 1.8 * (p.axis_ratio - 0.12)
    else:
        edge = 0.025 + 0.6 * max(0.0, 0.55 - p.axis_ratio)
    q2 = _norm([edge, 1.0 - edge])
    bar = 0.08 + 0.8 * p.bar
    q3 = _norm([bar, 1.0 - bar])
    spiral_vis = f if p.arms else 0.0
    spiral = 0.05 + 0.75 * spiral_vis if p.kind != "edge_on" else 0.05
    q4 = _norm([spiral, 1.0 - spiral])
    # Q5 is asked of those who see a disk: an elliptical's whole body is not read as its bulge.
    prominence = 0.35 if p.kind == "smooth" else p.bulge
    centres = np.array([-0.05, 0.2, 0.45, 0.75])
    q5 = _norm(np.exp(-0.5 * ((prominence - centres) / 0.14) ** 2) + 0.03)
    # Crowded fields draw "odd" votes (neighbours read as mergers or "other").
    odd = 0.012 + 0.021 * min(p.neighbours, 10) + 0.6 * p.odd_strength
    q6 = _norm([odd, 1.0 - odd])
    # Q7: roundness of what looks smooth.
    q7 = _norm(
        [
            np.exp(-0.5 * ((p.axis_ratio - 1.0) / 0.16) ** 2) + 0.02,
            np.exp(-0.5 * ((p.axis_ratio - 0.6) / 0.16) ** 2) + 0.02,
            np.exp(-0.5 * ((p.axis_ratio - 0.25) / 0.12) ** 2) + 0.01,
        ]
    )
    # Q8: the odd feature, with confusion spread mostly onto "other" and "merger".
    confusion = np.array([0.13, 0.03, 0.12, 0.18, 0.42, 0.12, 0.02])
    q8 = confusion.copy()
    if p.odd:
        q8 = q8 * (1.0 - p.odd_strength)
        q8[ODD_FEATURES.index(p.odd)] += 2.0 * p.odd_strength
    q8 = _norm(q8)
    shape = {"rounded": [0.8, 0.06, 0.14], "boxy": [0.25, 0.6, 0.15], "none": [0.15, 0.05, 0.8]}
    q9 = _norm(shape[p.bulge_shape])
    winding = np.array([9.0, 18.0, 30.0])
    q10 = _norm(np.exp(-0.5 * ((p.pitch - winding) / 6.0) ** 2) + 0.05)
    arms_vis = spiral_vis
    arms = np.full(5, 0.03)
    if p.arms:
        arms[p.arms - 1] += 1.0
    q11 = _norm([*(arms * arms_vis), 0.25 + 0.7 * (1.0 - arms_vis)])
    return [q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11]


def vote_fractions(params: GalaxyParams, rng: np.random.Generator) -> np.ndarray:
    """Kaggle label row (37,) from 22-55 simulated volunteers walking the decision tree.

    Each volunteer answers every question it reaches with :func:`answer_probabilities`; a few
    volunteers get a lower weight, as in the GZ2 consistency weighting. Each question's weighted
    answers become fractions summing to 1, then are multiplied by the value of the answer that
    leads to the question, exactly as in the Kaggle data; Q6 sums to 1 for every galaxy. So the
    row obeys :func:`galaxyzoo_cli.core.schema.check_consistency` up to floating-point rounding.
    """
    probs = answer_probabilities(params)
    n = int(rng.integers(22, 56))
    weights = np.where(rng.random(n) < 0.85, 1.0, rng.uniform(0.1, 0.9, size=n))
    answers = [rng.choice(len(p), size=n, p=p) for p in probs]
    reaches = volunteer_reach(answers)  # each volunteer walks the tree by its own answers
    values = np.zeros(N_OUTPUTS)
    for q, answer, reach in zip(QUESTIONS, answers, reaches, strict=True):
        w = weights[reach]
        counts = np.bincount(answer[reach], weights=w, minlength=len(q.answers))
        total = w.sum()
        if total > 0:
            fractions = counts / total
        elif q.parent is None:
            fractions = np.eye(len(q.answers))[-1]  # nobody asked (all said "star"): Q6 "no"
        else:
            fractions = np.zeros(len(q.answers))
        parent = 1.0 if q.parent_column is None else values[q.parent_column]
        values[q.slice] = fractions * parent
    return values


# ---------------------------------------------------------------------------------------------
# Writing a data folder
# ---------------------------------------------------------------------------------------------


def galaxy_ids(n: int, seed: int, test: bool = False) -> np.ndarray:
    """The GalaxyIDs of the first ``n`` training (or test) galaxies of ``seed``: unique 6-digit
    ints in 100008..999996; training and test IDs never overlap."""
    rng = np.random.default_rng([seed, 2])
    step = int(rng.integers(1, _ID_SPAN))
    while math.gcd(step, _ID_SPAN) != 1:
        step += 1
    offset = int(rng.integers(0, _ID_SPAN))
    index = 2 * np.arange(n, dtype=np.int64) + int(test)
    return _ID_MIN + (index * step + offset) % _ID_SPAN


def _galaxy_rng(seed: int, test: bool, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(test), index])


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


@dataclass(frozen=True)
class SyntheticResult:
    """What :func:`generate` did."""

    data_dir: Path
    n_train: int
    n_test: int
    seed: int
    seconds: float
    skipped: bool = False
    """True when the folder already held exactly this request and nothing was written."""
    mean_jpeg_bytes: float = 0.0

    @property
    def images_per_second(self) -> float:
        n = self.n_train + self.n_test
        return n / self.seconds if self.seconds > 0 and not self.skipped else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "seed": self.seed,
            "generator_version": GENERATOR_VERSION,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 1),
            "mean_jpeg_bytes": round(self.mean_jpeg_bytes, 1),
        }

    def summary(self) -> str:
        if self.skipped:
            return (
                f"{self.data_dir} already holds these synthetic galaxies ({self.n_train} training, "
                f"{self.n_test} test, seed {self.seed}); nothing to do."
            )
        return (
            f"Wrote {self.n_train} labelled and {self.n_test} test synthetic galaxies to "
            f"{self.data_dir} in {self.seconds:.1f} s ({self.images_per_second:.0f} images/s, "
            f"{self.mean_jpeg_bytes / 1000:.1f} kB each)."
        )


def _marker(n_train: int, n_test: int, seed: int) -> dict[str, Any]:
    return {
        "generator": "galaxyzoo_cli.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
    }


_LAYOUT = (TRAIN_IMAGES, TEST_IMAGES, LABELS_CSV, MARKER)


def _holds_request(data_dir: Path, marker: dict[str, Any]) -> bool:
    """Whether ``data_dir`` is a complete synthetic layout written for exactly ``marker``."""
    try:
        found = json.loads((data_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if found != marker or not (data_dir / LABELS_CSV).is_file():
        return False
    for folder, n in ((TRAIN_IMAGES, marker["n_train"]), (TEST_IMAGES, marker["n_test"])):
        path = data_dir / folder
        count = len(os.listdir(path)) if path.is_dir() else 0
        if count != n:
            return False
    return True


def generate(
    data_dir: str | os.PathLike[str],
    n_train: int,
    n_test: int = 0,
    seed: int = 0,
    force: bool = False,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> SyntheticResult:
    """Write ``n_train`` labelled and ``n_test`` unlabelled synthetic galaxies in the Kaggle layout.

    Files: ``images_training_rev1/<GalaxyID>.jpg``, ``training_solutions_rev1.csv`` (rows sorted
    by GalaxyID), ``images_test_rev1/<GalaxyID>.jpg`` (only when ``n_test`` > 0) and
    ``SYNTHETIC.json``. The same arguments give byte-identical files, whatever the number of
    ``workers`` (processes rendering; default: the CPUs, at most 8).

    Everything is written into a temporary sibling folder and moved into place at the end, so an
    interrupted run leaves ``data_dir`` as it was. If ``data_dir`` already holds exactly this
    request, nothing is written (``skipped=True``); if it holds any other Kaggle layout, this
    raises :class:`BadInputError` unless ``force``, which replaces the layout files and folders
    (and only those: other files in ``data_dir`` are kept).
    """
    data_dir = Path(data_dir)
    if n_train < 1:
        raise BadInputError(f"--synthetic {n_train}: give at least 1 training galaxy.")
    if n_test < 0:
        raise BadInputError(f"--test-images {n_test}: give 0 or more test images.")
    if max(n_train, n_test) > MAX_GALAXIES:
        raise BadInputError(
            f"--synthetic/--test-images: at most {MAX_GALAXIES} each (6-digit GalaxyIDs run out)."
        )
    if data_dir.exists() and not data_dir.is_dir():
        raise BadInputError(f"--data-dir {data_dir}: this is a file, not a folder.")
    marker = _marker(n_train, n_test, seed)
    existing = [name for name in _LAYOUT if (data_dir / name).exists()]
    if existing:
        if _holds_request(data_dir, marker):
            return SyntheticResult(data_dir, n_train, n_test, seed, 0.0, skipped=True)
        if not force:
            raise BadInputError(
                f"--data-dir {data_dir} already holds data ({', '.join(existing)}); "
                "use --force to replace it or choose another --data-dir."
            )

    if existing:
        reporter.log(f"--force: replacing {', '.join(existing)} in {data_dir}")
    reporter.log(f"Rendering {n_train + n_test} synthetic galaxies (seed {seed}) for {data_dir}")
    start = time.perf_counter()
    # A sibling, so the final moves are renames on the same file system.
    parent = data_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{data_dir.resolve().name}.", suffix=".tmp", dir=parent))
    try:
        n_workers = workers or default_workers()
        if (n_train + n_test) < 4 * _RENDER_CHUNK:
            n_workers = 1  # a small folder: starting processes costs more than it saves
        n_bytes = _write_layout(tmp, n_train, n_test, seed, n_workers, reporter)
        write_json_atomic(tmp / MARKER, marker)
        # The marker goes last: a layout is only complete once it is there.
        install_entries(tmp, data_dir, _LAYOUT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - start
    return SyntheticResult(
        data_dir, n_train, n_test, seed, seconds, mean_jpeg_bytes=n_bytes / (n_train + n_test)
    )


_RENDER_CHUNK = 200


def _render_chunk(
    folder: Path, seed: int, test: bool, start: int, ids: list[int]
) -> tuple[int, np.ndarray, int]:
    """Render galaxies ``start``… (their GalaxyIDs ``ids``) into ``folder``; returns the start,
    their label rows (training galaxies) and the JPEG bytes written. Runs in a worker process."""
    labels = np.zeros((len(ids), N_OUTPUTS))
    n_bytes = 0
    for k, gid in enumerate(ids):
        rng = _galaxy_rng(seed, test, start + k)
        params = sample_galaxy(rng)
        if not test:
            labels[k] = vote_fractions(params, rng)
        data = _jpeg(render_image(params, rng))
        (folder / f"{gid}.jpg").write_bytes(data)
        n_bytes += len(data)
    return start, labels, n_bytes


def _write_layout(
    folder: Path, n_train: int, n_test: int, seed: int, workers: int, reporter: Reporter
) -> int:
    """Render all galaxies into ``folder`` (in ``workers`` processes) and write the labels;
    returns the JPEG bytes written. Each galaxy has its own seed, so the files do not depend on
    the number of workers."""
    from concurrent.futures import Future, ProcessPoolExecutor

    n_bytes = 0
    labels = np.zeros((n_train, N_OUTPUTS))
    jobs = []
    for test, n in ((False, n_train), (True, n_test)):
        if n == 0:
            continue
        images = folder / (TEST_IMAGES if test else TRAIN_IMAGES)
        images.mkdir()
        ids = galaxy_ids(n, seed, test).tolist()
        jobs += [(images, seed, test, s, ids[s : s + _RENDER_CHUNK])
                 for s in range(0, n, _RENDER_CHUNK)]  # fmt: skip
    with reporter.task("Rendering galaxies", n_train + n_test) as task:
        if workers <= 1:
            for job in jobs:
                start, rows, written = _render_chunk(*job)
                n_bytes += written
                if not job[2]:
                    labels[start : start + len(rows)] = rows
                task.advance(len(rows))
        else:
            pool = ProcessPoolExecutor(workers)
            try:
                futures: list[tuple[Future[tuple[int, np.ndarray, int]], bool]] = [
                    (pool.submit(_render_chunk, *job), job[2]) for job in jobs
                ]
                for future, test in futures:
                    start, rows, written = future.result()
                    n_bytes += written
                    if not test:
                        labels[start : start + len(rows)] = rows
                    task.advance(len(rows))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    ids = galaxy_ids(n_train, seed)
    order = np.argsort(ids)
    write_labels(folder / LABELS_CSV, ids[order], labels[order])
    return n_bytes
