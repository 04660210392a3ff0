"""Typed settings and choices, without torch: the CLI builds them before any heavy import.

Every choice is an :class:`enum.Enum` of strings, so ``--help`` lists the values and mypy checks
them. :class:`TrainConfig` holds every setting of a training run; ``None`` means "the model's own
default" for the input options, resolved once by :func:`galaxyzoo_cli.models.resolve_config`.
:class:`EvaluateSettings` and :class:`PredictSettings` hold those of ``evaluate`` and ``predict``.
Each ``check()`` refuses what cannot work with a one-line :class:`BadInputError` naming the flag,
for the CLI and the Python API alike. The device is not a setting here: it is chosen once, at the
edge (:func:`galaxyzoo_cli.training.device.choose_device`), and passed to the library.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from galaxyzoo_cli.core.errors import BadInputError

DEFAULT_MODEL = "galaxynet"

REFERENCE_SIDE = 424
"""Side of the Kaggle images; crop sizes are given in this frame and scaled for other sizes."""
MIN_SIDE, MAX_SIDE = 8, 1024
"""The smallest crop or input side, and the largest input side, in pixels."""


def check_crop(crop: int | None, flag: str = "--crop") -> None:
    """Refuse a centred-crop side outside [8, 424] pixels of the 424-px frame (None: none)."""
    if crop is not None and not MIN_SIDE <= crop <= REFERENCE_SIDE:
        raise BadInputError(
            f"{flag} {crop}: give a side between {MIN_SIDE} and {REFERENCE_SIDE} pixels (of the "
            f"{REFERENCE_SIDE}-px frame)."
        )


def check_image_size(size: int | None, flag: str = "--image-size") -> None:
    """Refuse an input side outside [8, 1024] pixels (None: the crop's own side)."""
    if size is not None and not MIN_SIDE <= size <= MAX_SIDE:
        raise BadInputError(f"{flag} {size}: give a side between {MIN_SIDE} and {MAX_SIDE}.")


def check_tta(tta: int) -> None:
    """Refuse fewer than one test-time view."""
    if tta < 1:
        raise BadInputError(f"--tta {tta}: give 1 (no test-time augmentation) or more views.")


def check_at_least_one(value: int | None, flag: str) -> None:
    """Refuse a count below 1 (None: the default)."""
    if value is not None and value < 1:
        raise BadInputError(f"{flag} {value}: give at least 1.")


class Choice(str, Enum):
    """A named choice; its value is what the user types."""

    def __str__(self) -> str:
        return str(self.value)


class Head(Choice):
    TREE = "tree"
    SIGMOID = "sigmoid"


class Loss(Choice):
    MSE = "mse"
    RMSE = "rmse"
    BCE = "bce"
    QUESTION_BCE = "question-bce"
    """The seed notebook's hierarchical loss: per question, the mean binary cross-entropy of its
    answers, summed over the 11 questions (each question weighs the same)."""


class Optimizer(Choice):
    ADAMW = "adamw"
    ADAM = "adam"


class Schedule(Choice):
    COSINE = "cosine"
    CONSTANT = "constant"


class AugmentKind(Choice):
    AFFINE = "affine"
    """Rotation by any angle, flips, zoom and shifts: one bilinear resampling per batch."""
    DIHEDRAL = "dihedral"
    """The 8 exact symmetries of the square (quarter turns and flips): pixels moved, never
    resampled."""


class ValSplit(Choice):
    LAST = "last"
    """The highest GalaxyIDs (the competition winner's split)."""
    RANDOM = "random"
    FOLD = "fold"
    """Block ``--fold K`` of GalaxyIDs in ascending order (cross-validation; ``last`` is the last
    block)."""


class Monitor(Choice):
    METRIC = "metric"
    LOSS = "loss"


class Tracker(Choice):
    NONE = "none"
    TENSORBOARD = "tensorboard"


class ExportFormat(Choice):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"


class EvalSplit(Choice):
    VAL = "val"
    TRAIN = "train"
    ALL = "all"


E = TypeVar("E", bound=Choice)


def choice(kind: type[E], value: str | E, flag: str) -> E:
    """``value`` as a member of ``kind``; an unknown value is a :class:`BadInputError` naming
    ``flag`` and the choices."""
    if isinstance(value, kind):
        return value
    try:
        return kind(str(value).strip().lower())
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise BadInputError(f"{flag} {value!r}: unknown choice. Use one of: {names}.") from None


_CHOICES: dict[str, tuple[type[Choice], str]] = {
    "head": (Head, "--head"),
    "loss": (Loss, "--loss"),
    "optimizer": (Optimizer, "--optimizer"),
    "schedule": (Schedule, "--schedule"),
    "augment_kind": (AugmentKind, "--augment-kind"),
    "val_split": (ValSplit, "--val-split"),
    "log": (Tracker, "--log"),
    "monitor": (Monitor, "--monitor"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. ``None`` means: the model's own default."""

    model: str = DEFAULT_MODEL
    head: Head = Head.TREE
    loss: Loss = Loss.MSE
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    """The peak learning rate, reached after the warm-up."""
    weight_decay: float = 1e-4
    optimizer: Optimizer = Optimizer.ADAMW
    schedule: Schedule = Schedule.COSINE
    warmup_epochs: float | None = None
    """Epochs of linear warm-up before the cosine decay; None: 30% of ``epochs``."""
    ema: float = 0.0
    """Decay of the exponential moving average of the weights per step (0: off)."""
    channels: int | None = None
    image_size: int | None = None
    crop: int | None = None
    augment: bool | None = None
    augment_kind: AugmentKind = AugmentKind.DIHEDRAL
    """The 8 exact symmetries by default: 0.003 better in 5-fold CV than resampled rotations,
    zoom and shifts (docs/results.md)."""
    val_fraction: float = 0.1
    val_split: ValSplit = ValSplit.LAST
    fold: int = 1
    """With ``val_split=fold``: which block of ``val_fraction`` of the GalaxyIDs (1-based)."""
    limit: int | None = None
    seed: int = 0
    patience: int = 0
    head_epochs: int = 0
    """The first epochs train the head alone (features frozen, in eval mode); then all of it."""
    lr_decay: float = 1.0
    """Layer-wise learning-rate decay: each block of the features learns at this factor of the
    block above it (the head at ``lr``; 1: one rate for all)."""
    monitor: Monitor = Monitor.METRIC
    """What picks the best epoch (and stops early) for a user's task: its metric (ties: the
    loss) or the validation loss. The tree always uses the loss."""
    epoch_images: int | None = None
    """Images per epoch (None: the training set once); a smaller set is repeated up to it."""
    pretrained: bool | None = None
    weights: str | None = None
    freeze: bool | None = None
    workers: int | None = None
    name: str | None = None
    device: str = "auto"
    amp: bool = True
    cache: bool | None = None
    """Decoded images in the on-disk cache: None: when it takes up to 4 GB and fits."""
    strict: bool = False
    """Stop at a labelled galaxy without a readable image instead of leaving it out."""
    log: Tracker = Tracker.NONE
    """Mirror the metrics to an experiment tracker."""

    def __post_init__(self) -> None:
        # Choices given as plain strings (from Python or a saved run) become enum members here.
        for name, (kind, flag) in _CHOICES.items():
            object.__setattr__(self, name, choice(kind, getattr(self, name), flag))

    def check(self) -> None:
        """Reject impossible settings, naming the flag."""
        check_at_least_one(self.epochs, "--epochs")
        check_at_least_one(self.batch_size, "--batch-size")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInputError(f"--lr {self.lr}: give a positive learning rate such as 1e-3.")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise BadInputError(f"--weight-decay {self.weight_decay}: give 0 or more.")
        if not 0 <= self.val_fraction < 1:
            raise BadInputError(f"--val-fraction {self.val_fraction}: give a value in [0, 1).")
        n_folds = round(1 / self.val_fraction) if self.val_fraction else 0
        if self.val_split == ValSplit.FOLD and not 1 <= self.fold <= n_folds:
            raise BadInputError(
                f"--fold {self.fold}: give 1 to {n_folds} (--val-fraction {self.val_fraction:g} "
                f"makes {n_folds} folds)."
            )
        if self.limit is not None and self.limit < 2:
            raise BadInputError(f"--limit {self.limit}: give at least 2 images.")
        if self.patience < 0:
            raise BadInputError(f"--patience {self.patience}: give 0 (off) or more epochs.")
        if self.channels is not None and self.channels not in (1, 3):
            raise BadInputError(f"--channels {self.channels}: use 1 (grayscale) or 3 (RGB).")
        check_crop(self.crop)
        check_image_size(self.image_size)
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs < math.inf:
            raise BadInputError(
                f"--warmup-epochs {self.warmup_epochs:g}: give 0 or more epochs (default: 30% "
                "of --epochs)."
            )
        if not 0 <= self.ema < 1:
            raise BadInputError(f"--ema {self.ema}: give a decay in [0, 1), e.g. 0.995 (0: off).")
        if not 0 <= self.head_epochs < self.epochs:
            raise BadInputError(
                f"--head-epochs {self.head_epochs}: give 0 to {self.epochs - 1} (fewer than "
                f"--epochs {self.epochs}, so the whole network trains too)."
            )
        if not 0 < self.lr_decay <= 1:
            raise BadInputError(f"--lr-decay {self.lr_decay}: give a factor in (0, 1], e.g. 0.7.")
        check_at_least_one(self.epoch_images, "--epoch-images")
        check_at_least_one(self.workers, "--workers")

    def check_new_run(self) -> None:
        """What only a new run must satisfy (a resume may shorten --epochs below the warm-up it
        was created with: the rate then never reaches its peak)."""
        if self.warmup > self.epochs:
            raise BadInputError(
                f"--warmup-epochs {self.warmup:g}: give 0 to --epochs {self.epochs} (the "
                "learning rate then decays over the rest)."
            )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (choices as their strings)."""
        return {
            f.name: (v.value if isinstance(v := getattr(self, f.name), Choice) else v)
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The settings saved by :meth:`as_dict`, or a command's options (other keys are
        ignored: those of other versions, or the command's own)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_saved(cls, d: dict[str, Any]) -> TrainConfig:
        """A run's saved settings: a setting its version did not record yet takes the value
        that version used (a resumed 0.2 run keeps its resampled augmentation and its one
        epoch of warm-up)."""
        return cls.from_dict({**BEFORE_RECORDED, **d})

    @property
    def warmup(self) -> float:
        """Epochs of warm-up: ``warmup_epochs``, or (None) :data:`WARMUP_SHARE` of the epochs."""
        return WARMUP_SHARE * self.epochs if self.warmup_epochs is None else self.warmup_epochs


WARMUP_SHARE = 0.3
"""The share of the epochs that warms the learning rate up by default (as a one-cycle schedule)."""

BEFORE_RECORDED: dict[str, Any] = {"augment_kind": "affine", "warmup_epochs": 1.0}
"""Settings that runs of 0.1 and 0.2 did not record, with the values those versions used."""

RESUMABLE = ("epochs", "patience", "device", "workers", "amp", "cache", "strict", "log")
"""The settings a resume may change; every other one is the run's own."""


def _as_paths(settings: object, *names: str) -> None:
    """Files and folders given as text (from Python) become :class:`Path` objects."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and not isinstance(value, Path):
            object.__setattr__(settings, name, Path(value))


@dataclass(frozen=True)
class EvaluateSettings:
    """The settings of ``evaluate`` (:func:`galaxyzoo_cli.inference.evaluate`)."""

    data_dir: Path | None = None
    """The labelled folder (default: the one the first run was trained on); for a finetuned run,
    its images folder."""
    split: EvalSplit = EvalSplit.VAL
    tta: int = 1
    """Views averaged per image (1: none; 8: the exact rotations and flips)."""
    cache: bool | None = None
    """Decoded images in the on-disk cache: None: when it takes up to 4 GB and fits."""
    workers: int | None = None
    """Threads decoding images (None: the CPU count, at most 8)."""
    write: bool = True
    """Write the figures (to ``out`` or the first run's eval.json)."""
    out: Path | None = None
    predictions: Path | None = None
    """Also a CSV of the evaluated galaxies' predictions."""
    strict: bool = False
    """Stop at a galaxy without a readable image instead of leaving it out."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "split", choice(EvalSplit, self.split, "--split"))
        _as_paths(self, "data_dir", "out", "predictions")

    def check(self) -> None:
        """Reject impossible settings, naming the flag."""
        check_tta(self.tta)
        check_at_least_one(self.workers, "--workers")


@dataclass(frozen=True)
class PredictSettings:
    """The settings of ``predict`` (:func:`galaxyzoo_cli.inference.predict`): which images (a
    folder of cutouts, a catalogue, or the Kaggle test images), what to write, and how."""

    data_dir: Path | None = None
    """The Kaggle-layout folder whose test images are predicted (default: the first run's)."""
    images: Path | None = None
    """A folder of JPEG, PNG or FITS cutouts, searched recursively."""
    catalogue: Path | None = None
    """A CSV with columns id and path (others are passed through)."""
    out: Path | None = None
    tta: int = 1
    """Views averaged per image (1: none; 8: the exact rotations and flips)."""
    batch_size: int | None = None
    """Images per batch (None: 256 at 64 px, fewer for larger inputs)."""
    cache: bool | None = None
    """Decoded images in the on-disk cache: None: when it takes up to 4 GB and fits."""
    workers: int | None = None
    """Threads decoding images (None: the CPU count, at most 8)."""
    strict: bool = False
    """Stop at an unreadable image instead of leaving it out."""
    derived: bool = False
    """Add the 0/1 ``derived_<flag>`` columns."""
    embeddings: Path | None = None
    """Also write the feature vectors (``.npy``), one row per CSV row."""
    fits: FitsOptions | None = None
    """How FITS cutouts become colour images (None: the defaults); checked when made."""

    def __post_init__(self) -> None:
        _as_paths(self, "data_dir", "images", "catalogue", "out", "embeddings")

    def check(self) -> None:
        """Reject impossible settings, naming the flag."""
        if self.images is not None and self.catalogue is not None:
            raise BadInputError("--images and --catalogue: give one of them.")
        check_tta(self.tta)
        check_at_least_one(self.batch_size, "--batch-size")
        check_at_least_one(self.workers, "--workers")


# ---------------------------------------------------------------------------------------------
# FITS cutouts
# ---------------------------------------------------------------------------------------------

FITS_SCALES = ("percentile", "sdss")


@dataclass(frozen=True)
class FitsOptions:
    """How a FITS cutout becomes a colour image like the SDSS JPEGs the model learnt from: an
    asinh stretch of the intensity that keeps the colours (Lupton et al. 2004, PASP 116, 133).

    ``bands``: the planes of a 3-band cube used as red, green and blue (0-based; for a g, r, i
    cube, (2, 1, 0) gives the SDSS colours); a single-band image is shown grey. ``q``: the asinh
    softening (larger: more of the faint outskirts shown).

    ``scale`` says where black and white are. ``"percentile"`` (the default) works on fluxes of
    any unit or zero point: black is each band's median (the sky, or ``minimum`` where given) and
    white the ``percentile`` of the sky-subtracted intensity, the way survey cutout tools scale
    images of unknown calibration. ``"sdss"`` is the fixed scaling of
    ``astropy.visualization.make_lupton_rgb`` with ``stretch`` (linear stretch) and ``minimum``
    (black level; ``None``: the median of the green plane), in the units of the data: its
    defaults suit SDSS images in nanomaggies, and saturate on data of a larger scale.
    """

    bands: tuple[int, int, int] = (2, 1, 0)
    """Also given as text, ``"2,1,0"`` (as ``--fits-bands`` takes it)."""
    stretch: float = 0.5
    q: float = 8.0
    minimum: float | None = None
    scale: str = "percentile"
    percentile: float = 99.5

    def __post_init__(self) -> None:
        # Every option is checked here, once, whether it comes from the CLI or from Python.
        object.__setattr__(self, "bands", parse_bands(self.bands))
        object.__setattr__(self, "scale", str(self.scale).strip().lower())
        if self.scale not in FITS_SCALES:
            raise BadInputError(f"--fits-scale {self.scale!r}: use percentile or sdss.")
        if not 50 < self.percentile <= 100:
            raise BadInputError(
                f"--fits-percentile {self.percentile}: give a percentile above 50 and up to 100 "
                "(e.g. 99.5)."
            )
        for flag, value in (("--fits-stretch", self.stretch), ("--fits-q", self.q)):
            if not (value > 0 and math.isfinite(value)):
                raise BadInputError(f"{flag} {value}: give a positive number.")
        if self.minimum is not None and not math.isfinite(self.minimum):
            raise BadInputError(f"--fits-minimum {self.minimum}: give a finite number.")

    def as_dict(self) -> dict[str, object]:
        return {"bands": list(self.bands), "scale": self.scale, "percentile": self.percentile,
                "stretch": self.stretch, "q": self.q, "minimum": self.minimum}  # fmt: skip


def parse_bands(bands: str | Iterable[object]) -> tuple[int, int, int]:
    """Three plane numbers (0-based) from a sequence or from text such as ``"2,1,0"``."""
    parts = bands.split(",") if isinstance(bands, str) else bands
    try:
        planes = [int(str(p).strip()) for p in parts]
    except (TypeError, ValueError):  # not a sequence, or 1.5, or "r"
        planes = []
    if len(planes) != 3 or min(planes) < 0:
        raise BadInputError(f"--fits-bands {bands!r}: give three plane numbers, e.g. 2,1,0.")
    return planes[0], planes[1], planes[2]
