"""Augmentation: the exact dihedral views move pixels without resampling."""

from __future__ import annotations

import torch

from galaxyzoo_cli.transforms import dihedral_batch, dihedral_view


def test_dihedral_batch_gives_each_image_one_exact_view_and_covers_all_eight() -> None:
    images = torch.rand(64, 3, 9, 9)  # odd side: a resampled rotation could not match exactly
    out = dihedral_batch(images, torch.Generator().manual_seed(0))
    seen = set()
    for img, aug in zip(images, out, strict=True):
        matches = [k for k in range(8) if torch.equal(dihedral_view(img[None], k)[0], aug)]
        assert matches, "an augmented image is not one of the 8 exact views of its input"
        seen.add(matches[0])
    assert seen == set(range(8))
    # Seeded: the same generator state gives the same views; the input is left as it was.
    again = dihedral_batch(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert sorted(out.flatten().tolist()) == sorted(images.flatten().tolist())
