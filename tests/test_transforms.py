"""Augmentation: the exact dihedral views move pixels without resampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.data.transforms import dihedral_batch, dihedral_view


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


def test_train_augments_by_the_kind_asked(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from galaxyzoo_cli.data import transforms
    from galaxyzoo_cli.training.loop import train

    calls = {"affine": 0, "dihedral": 0}
    real_affine, real_dihedral = transforms.augment_batch, transforms.dihedral_batch

    def affine(*a: object, **k: object) -> torch.Tensor:
        calls["affine"] += 1
        return real_affine(*a, **k)  # type: ignore[arg-type]

    def dihedral(*a: object, **k: object) -> torch.Tensor:
        calls["dihedral"] += 1
        return real_dihedral(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(transforms, "augment_batch", affine)
    monkeypatch.setattr(transforms, "dihedral_batch", dihedral)
    tiny = {"model": "test_tiny", "epochs": 1, "batch_size": 32, "device": "cpu", "limit": 64}
    run = train(TrainConfig(**tiny, augment_kind="affine", name="a"), data_dir=synthetic_data,
                runs_dir=tmp_path)  # fmt: skip
    assert calls == {"affine": 2, "dihedral": 0}  # 58 training images in batches of 32
    assert json.loads((run.run_dir / "config.json").read_text())["settings"]["augment_kind"] == (
        "affine"
    )
    train(TrainConfig(**tiny, name="d"), data_dir=synthetic_data, runs_dir=tmp_path)
    assert calls == {"affine": 2, "dihedral": 2}  # the exact views are the default


@pytest.mark.parametrize("warmup", [-1.0, float("nan"), float("inf")])
def test_warmup_must_be_a_number_of_epochs(warmup: float) -> None:
    with pytest.raises(BadInputError, match="--warmup-epochs"):
        TrainConfig(epochs=3, warmup_epochs=warmup).check()


def test_a_new_run_must_leave_epochs_to_decay(synthetic_data: Path, tmp_path: Path) -> None:
    from galaxyzoo_cli.training.loop import train

    config = TrainConfig(model="test_tiny", epochs=3, warmup_epochs=3.5, device="cpu")
    with pytest.raises(BadInputError, match="--warmup-epochs 3.5: give 0 to --epochs 3"):
        train(config, data_dir=synthetic_data, runs_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before any run folder
    assert TrainConfig(epochs=10).warmup == pytest.approx(3.0)  # the default: 30%
