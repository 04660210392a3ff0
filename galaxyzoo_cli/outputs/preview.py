"""The preprocessing preview: a grid of galaxies, one row per transform.

Every image goes through :func:`galaxyzoo_cli.data.images.load_image`, the decode that training,
prediction and deployment share: what the grid shows is what a model is given (FITS cutouts
included, rendered with the same options as ``predict``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.settings import FitsOptions
from galaxyzoo_cli.data.catalogue import TEST_IMAGES, TRAIN_IMAGES, list_images
from galaxyzoo_cli.data.cutouts import find_cutouts
from galaxyzoo_cli.data.images import InputSpec, load_image, parse_transform
from galaxyzoo_cli.outputs.drawing import pyplot, save_figure

NOTEBOOK_TRANSFORMS = (
    "original",
    "gray",
    "gray,crop=256",
    "gray,crop=256,size=128",
    "gray,crop=256,size=64",
)
"""The seed notebook's preview rows."""
MODEL_ROW = "model"
"""The row of the model's own input (the run's, or the default model's)."""


@dataclass(frozen=True)
class PreviewResult:
    out: Path
    galaxy_ids: list[int | str]
    transforms: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"out": str(self.out), "galaxy_ids": self.galaxy_ids, "transforms": self.transforms}

    def summary(self) -> str:
        return f"Wrote {self.out} ({len(self.transforms)} rows × {len(self.galaxy_ids)} galaxies)"


def preview(
    data_dir: Path = Path("data"),
    *,
    n: int = 5,
    transforms: Sequence[str] = (),
    out: Path = Path("preview.png"),
    seed: int = 0,
    images: Path | None = None,
    run: str | os.PathLike[str] | None = None,
    fits: FitsOptions | None = None,
) -> PreviewResult:
    """A grid of galaxies: one row per transform spec, ``n`` galaxies per column (as PNG).

    Galaxies are drawn (seeded) from ``images`` (any folder of JPEG, PNG and FITS cutouts, FITS
    rendered with ``fits``), else the training images of ``data_dir``, or its test images if
    there are none. Transform specs are those of :func:`galaxyzoo_cli.data.images.parse_transform`,
    or
    ``model``: the input of ``run`` (a run folder or checkpoint), else of the default model.
    Default rows: the notebook's five; with ``images`` or ``run``: ``original`` and ``model``.
    """
    if n < 1:
        raise BadInputError(f"-n {n}: show at least 1 galaxy.")
    users_own = images is not None or run is not None
    specs = list(transforms) or list(("original", MODEL_ROW) if users_own else NOTEBOOK_TRANSFORMS)
    model_name, model_spec = _model_input(run) if MODEL_ROW in specs else ("", InputSpec())
    rows = [(_model_label(model_name, model_spec), model_spec) if s == MODEL_ROW else
            (None, parse_transform(s)) for s in specs]  # fmt: skip
    if images is not None:
        found = find_cutouts(images)
        ids: Sequence[int | str] = found.ids
        paths: Sequence[Path] = found.paths
        source = str(images)
    else:
        folder = data_dir / TRAIN_IMAGES
        if not folder.is_dir() and (data_dir / TEST_IMAGES).is_dir():
            folder = data_dir / TEST_IMAGES
        gids, paths = list_images(folder)
        if not len(gids):
            raise BadInputError(
                f"{folder}: no images. Run `galaxyzoo fetch` or `fetch --synthetic N`."
            )
        ids, source = [int(i) for i in gids], folder.name
    pick = np.sort(
        np.random.default_rng(seed).choice(len(ids), size=min(n, len(ids)), replace=False)
    )
    plt = pyplot()
    fig, axes = plt.subplots(
        len(rows), len(pick), figsize=(1.9 * len(pick), 2.0 * len(rows)), squeeze=False
    )
    for row, (label, prep) in enumerate(rows):
        for column, galaxy in enumerate(pick):
            img = load_image(paths[int(galaxy)], prep, fits=fits)
            ax = axes[row][column]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(img.transpose(1, 2, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(str(ids[int(galaxy)]), fontsize=8)
            if column == 0:  # horizontal, a step a line: a long spec never runs into the next row
                text = label or "\n".join(prep.describe().split(" + "))
                ax.set_ylabel(f"{text}\n{img.shape[-1]} px", fontsize=8, rotation=0,
                              ha="right", va="center", labelpad=8)  # fmt: skip
    fig.suptitle(f"Preprocessing preview ({source})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out)
    return PreviewResult(out=out, galaxy_ids=[ids[int(i)] for i in pick], transforms=specs)


def _model_input(run: str | os.PathLike[str] | None) -> tuple[str, InputSpec]:
    """The name and input spec of a run's model (as its checkpoint stores it, as predict reads
    it), or of the default model."""
    if run is not None:
        from galaxyzoo_cli.training.run_folder import load_checkpoint, resolve_run

        ref = resolve_run(run)
        return ref.run_dir.name, load_checkpoint(ref.checkpoint).model.input
    from galaxyzoo_cli.core.settings import DEFAULT_MODEL
    from galaxyzoo_cli.models import resolve_config

    return f"default model {DEFAULT_MODEL}", resolve_config(DEFAULT_MODEL).input


def _model_label(name: str, spec: InputSpec) -> str:
    return "\n".join(["model input", f"({name})", *spec.describe().split(" + ")])
