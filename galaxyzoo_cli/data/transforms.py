"""Augmentation and test-time views on batches of tensors (never per PIL image).

Galaxies have no preferred orientation: rotations by any angle and flips leave the labels
unchanged, and so do small zooms and shifts. One affine resampling per batch does all of it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from galaxyzoo_cli.core.settings import check_tta


def augment_batch(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    max_zoom: float = 1.3,
    max_shift: float = 4 / 64,
) -> torch.Tensor:
    """Random rotation (0–360°), flip, log-uniform zoom in [1/max_zoom, max_zoom] and shift.

    ``images`` is (B, C, S, S) float; the random numbers come from ``generator`` (on the CPU) so a
    seeded run is reproducible. ``max_shift`` is a fraction of the image side.
    """
    b = images.shape[0]
    r = torch.rand(b, 5, generator=generator)
    angle = r[:, 0] * 2 * math.pi
    flip = torch.where(r[:, 1] < 0.5, -1.0, 1.0)
    zoom = torch.exp((r[:, 2] * 2 - 1) * math.log(max_zoom))
    shift = (r[:, 3:5] * 2 - 1) * (2 * max_shift)  # affine_grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
            torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    ).to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def dihedral_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Exact augmentation: each image in one of the 8 symmetries of the square (a random number
    of quarter turns, then a flip or not), drawn from ``generator``. No resampling, so no blur:
    the pixels are only moved."""
    view = torch.randint(0, 8, (images.shape[0],), generator=generator).to(images.device)
    out = torch.empty_like(images)
    for k in range(8):
        pick = (view == k).nonzero().flatten()
        if len(pick):
            out[pick] = dihedral_view(images[pick], k)
    return out


def dihedral_view(images: torch.Tensor, k: int) -> torch.Tensor:
    """View ``k`` (0–7) of the 8 exact symmetries of the square: k % 4 quarter turns, then a flip
    when k >= 4. Exact (no resampling)."""
    out = torch.rot90(images, k % 4, dims=(2, 3))
    return out.flip(3) if k % 8 >= 4 else out


def tta_views(images: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``n`` views of a batch for test-time averaging.

    The first min(n, 8) are the exact dihedral views (rotations by 90° and flips); beyond 8, views
    rotated by intermediate angles (45°, 22.5°, …) with and without a flip are added.
    """
    check_tta(n)
    views = [dihedral_view(images, k) for k in range(min(n, 8))]
    extra = n - len(views)
    if extra > 0:
        b = images.shape[0]
        n_angles = math.ceil(extra / 2)
        for j in range(extra):
            angle = (j // 2 + 0.5) * (math.pi / 2) / n_angles
            flip = -1.0 if j % 2 else 1.0
            cos, sin = math.cos(angle), math.sin(angle)
            theta = images.new_tensor([[cos * flip, -sin, 0.0], [sin * flip, cos, 0.0]])
            grid = F.affine_grid(theta.expand(b, 2, 3), list(images.shape), align_corners=False)
            views.append(F.grid_sample(images, grid, mode="bilinear", align_corners=False))
    return views
