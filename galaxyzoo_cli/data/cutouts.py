"""Your own cutouts: folders of JPEG, PNG and FITS files, catalogues of them, FITS as colour
images, and flags derived from the predicted vote fractions.

A model trained on SDSS JPEGs has only seen images that look like the Kaggle ones (gri colours,
asinh-stretched, about 0.4"/pixel, the galaxy centred and filling a similar part of the frame); its
answers on other surveys or processing are only as good as the resemblance.
"""

from __future__ import annotations

import csv
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.schema import COLUMNS, Learned
from galaxyzoo_cli.core.settings import FitsOptions

if TYPE_CHECKING:
    from PIL import Image

# astropy warns when a header claims more data than the file holds; such a file is refused (too
# large) or unreadable (truncated) and named, so the warning would only repeat it.
warnings.filterwarnings("ignore", message="File may have been truncated")

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
CUTOUT_SUFFIXES = (".jpg", ".jpeg", ".png", *FITS_SUFFIXES)


def is_fits(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(FITS_SUFFIXES)


class FitsSupportMissing(BadInputError):
    """FITS files to read and no astropy: stops the job (not a file to skip)."""


def fits_install_hint() -> str:
    """How to add astropy to this installation (pipx keeps the tool in its own environment)."""
    pip = "pip install 'galaxyzoo-cli[fits]'"
    pipx = "pipx inject galaxyzoo-cli astropy"
    if "pipx" in sys.prefix.lower():
        return f"{pipx} (this is a pipx installation; otherwise: {pip})"
    return f"{pip} (installed with pipx: {pipx})"


def require_fits(path: str | os.PathLike[str]) -> None:
    """Raise :class:`FitsSupportMissing`, naming ``path`` and the fix, when astropy is missing."""
    try:
        import astropy.io.fits  # noqa: F401
        import astropy.visualization  # noqa: F401
    except ImportError:
        raise FitsSupportMissing(
            f"{path}: reading FITS files needs astropy, which is not installed. Install it with: "
            f"{fits_install_hint()}"
        ) from None


def fits_image(path: str | os.PathLike[str], options: FitsOptions) -> Image.Image:
    """A FITS cutout (the first image HDU: 2-D, or a 3-D cube of bands) as an RGB PIL image."""
    from PIL import Image

    require_fits(path)
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdus:
            data = next((_fits_data(path, h) for h in hdus if h.header.get("NAXIS")), None)
    except (OSError, ValueError, TypeError) as e:
        raise BadInputError(f"{path}: cannot read this FITS file ({e}).") from None
    if data is None:
        raise BadInputError(f"{path}: no image data in any HDU of this FITS file.")
    data = np.nan_to_num(np.asarray(data, dtype=np.float64))
    if data.ndim == 2:
        planes = [data, data, data]
    elif data.ndim == 3 and max(options.bands) < data.shape[0]:
        planes = [data[b] for b in options.bands]
    else:
        raise BadInputError(
            f"{path}: a FITS image of shape {data.shape}; give a 2-D image or a cube of bands "
            f"with --fits-bands within its {data.shape[0] if data.ndim == 3 else 0} planes."
        )
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # make_lupton_rgb divides by 0 on black
        rgb = _percentile_rgb(planes, options) if options.scale == "percentile" else \
            _sdss_rgb(planes, options)  # fmt: skip
    return Image.fromarray(np.ascontiguousarray(rgb[::-1]), "RGB")  # FITS rows run bottom-up


MAX_FITS_VALUES = 89_478_485
"""The most values a FITS image may hold (all its planes; Pillow's limit for decoded pixels):
a header claiming more is a decompression bomb or not a cutout, and is not read."""


def _fits_data(path: str | os.PathLike[str], hdu: Any) -> np.ndarray | None:
    """The data of one HDU, once its header's axes show it is not enormous."""
    header = hdu.header
    axes = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, int(header["NAXIS"]) + 1)]
    if int(np.prod(axes, dtype=np.float64)) > MAX_FITS_VALUES:
        raise BadInputError(
            f"{path}: cannot read this FITS file (its header claims {' x '.join(map(str, axes))} "
            f"values, more than the {MAX_FITS_VALUES:,} read at most). Use a cutout of the galaxy."
        )
    return hdu.data


def _sdss_rgb(planes: list[np.ndarray], options: FitsOptions) -> np.ndarray:
    from astropy.visualization import make_lupton_rgb

    minimum = float(np.median(planes[1])) if options.minimum is None else options.minimum
    rgb: np.ndarray = make_lupton_rgb(
        *planes, minimum=minimum, stretch=options.stretch, Q=options.q
    )
    return rgb


def _percentile_rgb(planes: list[np.ndarray], options: FitsOptions) -> np.ndarray:
    """Black: each band's sky (median); white: the ``percentile`` of the intensity; between
    them asinh(q·I) / asinh(q), applied to the intensity so that colours are kept (a pixel
    brighter than white is scaled down as a whole, not clipped per band)."""
    x = np.stack(
        [p - (np.median(p) if options.minimum is None else options.minimum) for p in planes]
    )
    intensity = x.mean(axis=0)
    white = float(np.percentile(intensity, options.percentile))
    if not white > 0:  # a flat or empty image: its brightest pixel, else nothing to show
        white = float(intensity.max()) if intensity.max() > 0 else 1.0
    x, intensity = x / white, intensity / white
    gain = np.where(intensity > 0, np.arcsinh(options.q * intensity) / np.arcsinh(options.q), 0.0)
    rgb = x * np.divide(gain, intensity, out=np.zeros_like(gain), where=intensity > 0) * 255.0
    brightest = rgb.max(axis=0)
    rgb *= np.where(brightest > 255.0, 255.0 / np.maximum(brightest, 1e-12), 1.0)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0)


@dataclass
class Cutouts:
    """Image files to predict, with their IDs (unique, in output order) and any catalogue
    columns to pass through. ``kaggle``: every ID is a GalaxyID (the Kaggle format applies)."""

    ids: list[str]
    paths: list[Path]
    kaggle: bool
    columns: dict[str, list[str]] = field(default_factory=dict)


def find_cutouts(folder: Path) -> Cutouts:
    """Every JPEG, PNG and FITS file under ``folder`` (recursively), sorted; IDs are the file
    stems (their paths below ``folder`` where stems repeat, and the whole file names there
    where those repeat too: ``a.fits`` beside ``a.png``). Digit-only stems are GalaxyIDs."""
    if not folder.is_dir():
        raise BadInputError(f"--images {folder}: folder not found.")
    paths = sorted(_walk(folder))
    if not paths:
        raise BadInputError(
            f"--images {folder}: no JPEG, PNG or FITS files here (or in its subfolders)."
        )
    stems = [file_stem(Path(p.name)) for p in paths]
    if len(set(stems)) < len(stems):
        stems = [file_stem(p.relative_to(folder)) for p in paths]
    if len(set(stems)) < len(stems):  # the same stem in several formats: keep the suffixes
        stems = [p.relative_to(folder).as_posix() for p in paths]
    if all(s.isdigit() for s in stems):  # GalaxyIDs: in ascending order, as Kaggle wants them
        order = sorted(range(len(stems)), key=lambda k: int(stems[k]))
        return Cutouts([stems[k] for k in order], [paths[k] for k in order], kaggle=True)
    return Cutouts(stems, paths, kaggle=False)


def _walk(folder: Path) -> list[Path]:
    """The files under ``folder`` named like cutouts, following links to folders once each (a
    link loop is not walked around). A name that is no readable file (a broken link, a loop of
    links) is listed: reading it fails, and it is named among the unreadable images."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:  # gone since it was listed
            st = None
        if st is None or (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        found += [Path(root, f) for f in files if f.lower().endswith(CUTOUT_SUFFIXES)]
    return found


def check_unique_ids(ids: list[str], where: str, fix: str) -> None:
    """Refuse an empty id or one seen before, naming ``where`` (a flag and file) and its line."""
    seen: set[str] = set()
    for line, gid in enumerate(ids, start=2):
        if not gid or gid in seen:
            problem = "an empty id" if not gid else f"id {gid!r} a second time"
            raise BadInputError(f"{where} line {line}: {problem}. {fix}")
        seen.add(gid)


def file_stem(path: Path) -> str:
    """``path`` without its image suffix (``J1015+0523.fits.gz`` → ``J1015+0523``): the ids
    ``predict --images`` gives its rows."""
    name = path.as_posix()
    for suffix in sorted(CUTOUT_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_catalogue(path: Path) -> Cutouts:
    """A CSV with columns ``id`` and ``path`` (relative to the CSV's folder, or absolute) and any
    others (ra, dec, …). Predictions carry every column but ``id`` through unchanged, ``path``
    included, after the answers. Rows keep their order. A column named like one the prediction
    adds (an answer, ``Class1.1``…, or a derived flag, ``derived_smooth``…) is refused."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = list(csv.DictReader(f, fieldnames=header))
    except FileNotFoundError:
        raise BadInputError(f"--catalogue {path}: file not found.") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise BadInputError(f"--catalogue {path}: not a readable CSV ({e}).") from None
    if not rows or not {"id", "path"} <= set(header):
        raise BadInputError(
            f"--catalogue {path}: needs a header with the columns id and path (and a row per "
            "image); other columns are passed through."
        )
    repeated = sorted({c for c in header if header.count(c) > 1})
    clash = [c for c in header if c in RESERVED_COLUMNS]
    if repeated or clash:
        name = (repeated or clash)[0]
        why = "appears twice in the header" if repeated else "is a column predict writes"
        raise BadInputError(
            f"--catalogue {path}: column {name!r} {why}. Rename it in the CSV (the answers "
            "are Class1.1 … Class11.6, the flags derived_…)."
        )
    ids = [(r["id"] or "").strip() for r in rows]
    check_unique_ids(ids, f"--catalogue {path}", "Give unique ids.")
    paths = [Path((r["path"] or "").strip()) for r in rows]
    paths = [p if p.is_absolute() else path.parent / p for p in paths]
    others = [c for c in header if c != "id"]
    return Cutouts(
        ids, paths, kaggle=False, columns={c: [r.get(c) or "" for r in rows] for c in others}
    )


# --------------------------------------------------------------------------------------------
# Flags derived from the vote fractions
# --------------------------------------------------------------------------------------------

DERIVED = ("smooth", "featured", "edge_on", "barred", "spiral")
"""The derived flags (0/1), in order; see :func:`derived_flags` and docs/user-guide.md. Their
columns are named ``derived_<flag>`` (:data:`DERIVED_PREFIX`)."""
DERIVED_PREFIX = "derived_"
DERIVED_NEEDS: dict[str, tuple[int, ...]] = {
    "smooth": (1,),
    "featured": (1,),
    "edge_on": (1, 2),
    "barred": (1, 2, 3),
    "spiral": (1, 2, 4),
}
"""The questions each flag is computed from: a flag needs a run that learned all of them."""
RESERVED_COLUMNS = frozenset(COLUMNS) | {DERIVED_PREFIX + k for k in DERIVED}
"""Column names a prediction writes besides the id: a catalogue may not bring its own."""


@dataclass(frozen=True)
class DerivedFlags:
    """The flags a run can give (columns ``derived_<flag>`` → 0/1 per galaxy) and those left out,
    with the questions they need that the run never learned."""

    columns: dict[str, np.ndarray]
    omitted: dict[str, tuple[int, ...]]

    def note(self) -> str | None:
        """One line naming the flags left out and why; None when none was."""
        if not self.omitted:
            return None
        parts = [
            f"{name} (needs {', '.join(f'Q{n}' for n in need)})"
            for name, need in self.omitted.items()
        ]
        return (
            f"--derived: left out {'; '.join(parts)}: the run never had labels for "
            "those questions, so its answers there are a prior, not a measurement."
        )


def derived_flags(values: np.ndarray, learned: Learned | None = None) -> DerivedFlags:
    """Clean-sample flags from predicted (Kaggle-style, cumulative) vote fractions (N, 37),
    each only when ``learned`` (default: all questions) holds the questions it is computed from
    (:data:`DERIVED_NEEDS`).

    Thresholds from the Galaxy Zoo 2 literature: smooth p ≥ 0.469 and features-or-disk p ≥ 0.430
    (Willett et al. 2013, MNRAS 435, 2835, Table 3); edge-on: a featured galaxy with conditional
    p(edge-on) ≥ 0.602 (ibid.); barred: a featured galaxy not edge-on (conditional p ≥ 0.715,
    ibid.) with conditional p(bar) ≥ 0.5 (Masters et al. 2011, MNRAS 411, 2026); spiral: the
    cumulative p(features) × p(not edge-on) × p(spiral), Kaggle's Class4.1, > 0.5 (Hart et al.
    2016, MNRAS 461, 3663). Those thresholds were set on debiased GZ2 likelihoods; applied to a
    model's predicted fractions they are a convenience, not a calibrated classification.
    """
    v = np.asarray(values, dtype=np.float64)
    learned = learned or Learned()

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 1e-9)

    featured = v[:, 1] >= 0.430
    face_on = featured & (ratio(v[:, 4], v[:, 1]) >= 0.715)
    flags = {
        "smooth": v[:, 0] >= 0.469,
        "featured": featured,
        "edge_on": featured & (ratio(v[:, 3], v[:, 1]) >= 0.602),
        "barred": face_on & (ratio(v[:, 5], v[:, 4]) >= 0.5),
        "spiral": v[:, 7] > 0.5,
    }
    columns, omitted = {}, {}
    for k in DERIVED:
        missing = tuple(n for n in DERIVED_NEEDS[k] if n not in learned.questions)
        if missing:
            omitted[k] = missing
        else:
            columns[DERIVED_PREFIX + k] = flags[k].astype(np.int8)
    return DerivedFlags(columns, omitted)
