"""The preprocessing preview: a grid of galaxies, one row per transform."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxyzoo_cli.data import TEST_IMAGES, TRAIN_IMAGES, list_images
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.figures import pyplot, save_figure
from galaxyzoo_cli.images import load_image, parse_transform

NOTEBOOK_TRANSFORMS = (
    "original",
    "gray",
    "gray,crop=256",
    "gray,crop=256,size=128",
    "gray,crop=256,size=64",
)
"""The seed notebook's preview rows."""


@dataclass(frozen=True)
class PreviewResult:
    out: Path
    galaxy_ids: list[int]
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
) -> PreviewResult:
    """A grid of galaxies: one row per transform spec, ``n`` galaxies per row (as PNG).

    Galaxies are drawn (seeded) from the training images, or the test images if there are none.
    Transform specs are those of :func:`galaxyzoo_cli.images.parse_transform`; default: the
    notebook's five rows.
    """
    if n < 1:
        raise BadInputError(f"-n {n}: show at least 1 galaxy.")
    specs = list(transforms) or list(NOTEBOOK_TRANSFORMS)
    preps = [parse_transform(s) for s in specs]
    folder = data_dir / TRAIN_IMAGES
    if not folder.is_dir() and (data_dir / TEST_IMAGES).is_dir():
        folder = data_dir / TEST_IMAGES
    ids, paths = list_images(folder)
    if not len(ids):
        raise BadInputError(f"{folder}: no images. Run `galaxyzoo fetch` or `fetch --synthetic N`.")
    pick = np.sort(
        np.random.default_rng(seed).choice(len(ids), size=min(n, len(ids)), replace=False)
    )
    plt = pyplot()
    fig, axes = plt.subplots(
        len(preps), len(pick), figsize=(1.9 * len(pick), 2.0 * len(preps)), squeeze=False
    )
    for r, prep in enumerate(preps):
        for c, i in enumerate(pick):
            img = load_image(paths[int(i)], prep)
            ax = axes[r][c]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(img.transpose(1, 2, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(ids[int(i)]), fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{prep.describe()}\n{img.shape[-1]} px", fontsize=8)
    fig.suptitle(f"Preprocessing preview ({folder.name})", fontsize=10)
    save_figure(fig, out)
    return PreviewResult(out=out, galaxy_ids=[int(ids[int(i)]) for i in pick], transforms=specs)
