"""What a model sees of an image file: the input spec and the one function that decodes to it.

An :class:`InputSpec` says how a file becomes an array (colour, centred crop, output side) and how
the model normalises it (per-channel mean and std). A model's spec is resolved once, stored in its
checkpoints, and read by training, the cache, evaluation, prediction and export alike.
"""

from __future__ import annotations

import errno
import json
import os
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli.core.errors import BadInputError, GalaxyZooError, os_error
from galaxyzoo_cli.core.progress import Reporter
from galaxyzoo_cli.core.settings import REFERENCE_SIDE, FitsOptions, check_crop, check_image_size
from galaxyzoo_cli.data.cutouts import fits_image, is_fits, require_fits

if TYPE_CHECKING:
    from PIL import Image

# Pillow warns of a possible decompression bomb above its pixel limit; _sane_size refuses those
# images itself, naming the file, so the warning would only repeat it without the file's name.
warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")

_CHUNK = 256


@dataclass(frozen=True)
class InputSpec:
    """How an image file becomes a model input.

    ``crop`` is the side of the centred square in pixels of the 424-px Kaggle frame; on images of
    another size it is scaled in proportion (a relative crop). ``None`` keeps the largest centred
    square. ``size`` is the output side (``None``: the crop's own size). ``mean`` and ``std`` (one
    value per channel, for images scaled to [0, 1]) are the model's normalisation; empty for a
    spec that only describes pixels (the preview).
    """

    channels: int = 3
    crop: int | None = None
    size: int | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise BadInputError(f"channels {self.channels}: use 1 (grayscale) or 3 (RGB).")
        check_crop(self.crop, "crop")
        check_image_size(self.size, "size")
        for name in ("mean", "std"):
            values = getattr(self, name)
            object.__setattr__(self, name, tuple(float(v) for v in values))
            if values and len(values) != self.channels:
                raise BadInputError(f"{name} {values}: give one value per channel.")

    def crop_side(self, width: int, height: int) -> float:
        """Side of the centred square taken from a ``width`` × ``height`` image, in its pixels."""
        side = min(width, height)
        return side if self.crop is None else min(side, self.crop * side / REFERENCE_SIDE)

    def output_side(self, width: int = REFERENCE_SIDE, height: int = REFERENCE_SIDE) -> int:
        """Side of the array made from a ``width`` × ``height`` image (the one rule for it)."""
        return self.size or max(1, round(self.crop_side(width, height)))

    @property
    def mode(self) -> str:
        """The PIL mode the image is converted to."""
        return "L" if self.channels == 1 else "RGB"

    def describe(self) -> str:
        parts = ["grayscale" if self.channels == 1 else "RGB"]
        if self.crop is not None:
            parts.append(f"crop {self.crop}")
        if self.size is not None:
            parts.append(f"resize {self.size}")
        return " + ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "crop": self.crop,
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(
            channels=int(d["channels"]),
            crop=d.get("crop"),
            size=d.get("size"),
            mean=tuple(d.get("mean") or ()),
            std=tuple(d.get("std") or ()),
        )


def parse_transform(spec: str) -> InputSpec:
    """A preview transform such as ``"gray,crop=256,size=64"`` as an :class:`InputSpec`.

    Tokens: ``original``/``rgb``, ``gray``/``grayscale``, ``crop=N`` and ``size=N`` (or
    ``resize=N``), separated by commas or ``+``. Errors name ``--transform`` and the token.
    """
    flag = f"--transform {spec!r}:"
    channels, crop, size = 3, None, None
    for token in filter(None, (t.strip().lower() for t in re.split(r"[,+]", spec))):
        name, _, value = token.partition("=")
        if name in ("original", "rgb", "color", "colour") and not value:
            channels = 3
        elif name in ("gray", "grey", "grayscale", "greyscale") and not value:
            channels = 1
        elif name == "crop" and value.isdigit():
            crop = int(value)
            check_crop(crop, f"{flag} crop")
        elif name in ("size", "resize") and value.isdigit():
            size = int(value)
            check_image_size(size, f"{flag} {name}")
        else:
            raise BadInputError(
                f"{flag} cannot use {token!r}; use comma-separated original, gray, crop=N, size=N "
                "(e.g. 'gray,crop=256,size=64')."
            )
    return InputSpec(channels=channels, crop=crop, size=size)


def image_size(path: str | os.PathLike[str], fits: FitsOptions | None = None) -> tuple[int, int]:
    """(width, height) of an image file, read from its header (FITS: from its data)."""
    from PIL import Image, UnidentifiedImageError

    if is_fits(path):
        return fits_image(path, fits or FitsOptions()).size
    try:
        with Image.open(path) as im:
            return _sane_size(path, *im.size)
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as e:
        raise _unreadable(path, e) from None


MAX_ASPECT = 10
"""The most elongated image decoded (long side / short side); a cutout is about square."""


def _sane_size(path: str | os.PathLike[str], width: int, height: int) -> tuple[int, int]:
    """(width, height), or an error for a decompression bomb (more pixels than Pillow's limit,
    ``PIL.Image.MAX_IMAGE_PIXELS``, whose decoding would take gigabytes) or an absurd shape."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise BadInputError(
            f"{path}: cannot read this image ({width} x {height} pixels, more than the "
            f"{limit:,} decoded at most: a decompression bomb?). Use a cutout of the galaxy."
        )
    if max(width, height) > MAX_ASPECT * max(1, min(width, height)):
        raise BadInputError(
            f"{path}: cannot read this image ({width} x {height} pixels: more than "
            f"{MAX_ASPECT}:1, not a cutout of a galaxy). Use a cutout about as wide as high."
        )
    return width, height


def _unreadable(path: str | os.PathLike[str], e: Exception) -> GalaxyZooError:
    if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
        return os_error(e, path)  # the machine's fault, not the file's: stop, do not skip
    return BadInputError(
        f"{path}: cannot read this image ({e}). Replace or delete the file (re-fetch the data)."
    )


def load_image(
    path: str | os.PathLike[str],
    spec: InputSpec,
    side: int | None = None,
    fits: FitsOptions | None = None,
) -> np.ndarray:
    """Decode one image (JPEG, PNG, or FITS rendered by ``fits``) into a uint8 array of shape
    (channels, side, side).

    ``side`` defaults to ``spec.output_side`` of this image; give it to force one side for images
    of mixed sizes. Every file is decoded in full, converted to the spec's colour mode and
    resized from its centred crop (:func:`crop_resize`), so the same pixels give the same array
    whatever the container (a JPEG and a PNG of its decoded pixels agree exactly), and the few
    Pillow lines of docs/deploy.md reproduce it. Raises :class:`BadInputError` for unreadable
    files.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with fits_image(path, fits or FitsOptions()) if is_fits(path) else Image.open(path) as im:
            _sane_size(path, *im.size)
            img = im.convert(spec.mode)
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as e:
        raise _unreadable(path, e) from None
    arr = np.asarray(crop_resize(img, spec, side), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def crop_resize(img: Image.Image, spec: InputSpec, side: int | None = None) -> Image.Image:
    """The centred crop of ``spec`` (relative to the image's side), resized to ``side`` (default:
    the spec's output side) with Pillow's bilinear filter: one call, as docs/deploy.md does it."""
    from PIL import Image

    c = spec.crop_side(*img.size)
    out = side or spec.output_side(*img.size)
    box = ((img.width - c) / 2, (img.height - c) / 2, (img.width + c) / 2, (img.height + c) / 2)
    return img.resize((out, out), Image.Resampling.BILINEAR, box=box)


def load_input(
    path: str | os.PathLike[str],
    spec: InputSpec | dict[str, Any] | str | os.PathLike[str],
    fits: FitsOptions | None = None,
) -> np.ndarray:
    """The model's input for one image file: float32 (1, C, S, S), values in [0, 1].

    ``spec`` is a model's :class:`InputSpec`, an exported model's spec file (``model.onnx.json``)
    or its parsed content (or just its ``"input"`` part). Feed the result to the exported model
    (its normalisation is inside it) and you get what ``galaxyzoo predict`` gives for that file:
    both decode through :func:`load_image`.
    """
    pixels = load_image(path, as_input_spec(spec), fits=fits)
    return (pixels.astype(np.float32) / np.float32(255.0))[None]


def as_input_spec(spec: InputSpec | dict[str, Any] | str | os.PathLike[str]) -> InputSpec:
    """An :class:`InputSpec` from itself, an export's spec file, or that file's parsed content."""
    if isinstance(spec, InputSpec):
        return spec
    data: Any = spec
    if not isinstance(spec, dict):
        file = Path(spec)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BadInputError(
                f"{file}: cannot read this input spec ({e}); give the .json written by "
                "`galaxyzoo export` beside the model."
            ) from None
    d = data.get("input", data) if isinstance(data, dict) else None
    if not isinstance(d, dict) or "channels" not in d:
        raise BadInputError(
            "Not an input spec: expected the JSON written by `galaxyzoo export` (with an "
            "'input' holding channels, crop and size)."
        )
    return InputSpec.from_dict(d)


def batch_for(side: int | None, at_64: int) -> int:
    """Images per batch for inputs of ``side`` pixels: ``at_64`` at 64 px, scaled down with the
    area (activation memory grows with it), at least 16."""
    return max(16, int(at_64 * (64 / (side or 64)) ** 2))


def default_workers() -> int:
    """Decoding threads: the CPUs this process may use (all of them where that is unknown), ≤ 8."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return max(1, min(8, len(usable) if usable else (os.cpu_count() or 1)))


def decode_into(
    out: np.ndarray,
    paths: Sequence[Path],
    spec: InputSpec,
    workers: int | None,
    reporter: Reporter,
    fits: FitsOptions | None = None,
) -> dict[int, str]:
    """Decode ``paths`` into ``out`` (N, C, S, S) in chunks, with threads (PIL releases the GIL to
    decode). Returns the unreadable ones (position: reason); their rows are zeros. FITS files
    without astropy installed stop it (:class:`FitsSupportMissing`): none of them is readable."""
    side = out.shape[-1]
    unreadable: dict[int, str] = {}
    first_fits = next((p for p in paths if is_fits(p)), None)
    if first_fits is not None:
        require_fits(first_fits)

    def work(start: int) -> int:
        stop = min(start + _CHUNK, len(paths))
        for i in range(start, stop):
            try:
                out[i] = load_image(paths[i], spec, side, fits)  # one side, even for mixed sizes
            except BadInputError as e:
                out[i] = 0
                unreadable[i] = str(e)
        return stop - start

    starts = range(0, len(paths), _CHUNK)
    n_workers = workers or default_workers()
    with reporter.task("Decoding images", len(paths)) as task:
        if n_workers <= 1:
            for s in starts:
                task.advance(work(s))
        else:
            with ThreadPoolExecutor(n_workers) as pool:
                for n in pool.map(work, starts):
                    task.advance(n)
    return dict(sorted(unreadable.items()))
