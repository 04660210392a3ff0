"""The preprocessed-image cache: reuse, invalidation and interrupt safety."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import galaxyzoo_cli.cache as cache
import galaxyzoo_cli.images as images_module
from galaxyzoo_cli.data import TRAIN_IMAGES, list_images
from galaxyzoo_cli.images import InputSpec, load_image

PREP = InputSpec(channels=1, crop=256, size=32)


@pytest.fixture
def images(synthetic_data: Path, tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images"
    shutil.copytree(synthetic_data / TRAIN_IMAGES, folder)
    return list_images(folder)[1][:40]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every image the cache decodes."""
    seen: list[Path] = []
    real = images_module.load_image

    def counting(path, *args, **kwargs):
        seen.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images_module, "load_image", counting)
    return seen


def test_cache_matches_direct_decoding_and_is_reused(
    images: list[Path], tmp_path: Path, decodes: list[Path]
) -> None:
    root = tmp_path / "c"
    first = cache.load_images(images, PREP, cache_dir=root, workers=2).pixels
    assert first.shape == (40, 1, 32, 32) and first.dtype == np.uint8
    assert isinstance(first, np.memmap) and not first.flags.writeable
    for i in (0, 17, 39):
        np.testing.assert_array_equal(first[i], load_image(images[i], PREP))
    n = len(decodes)
    again = cache.load_images(images, PREP, cache_dir=root).pixels
    assert len(decodes) == n  # nothing decoded the second time
    np.testing.assert_array_equal(again, first)
    assert len(list(root.glob("*.npy"))) == 1 and len(list(root.glob("*.json"))) == 1


def test_changed_settings_or_images_rebuild(images: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "c"
    key = cache.cache_key(images, PREP)
    assert cache.cache_key(images, InputSpec(channels=3, crop=256, size=32)) != key
    assert cache.cache_key(images[:-1], PREP) != key
    cache.load_images(images, PREP, cache_dir=root)
    st = images[5].stat()
    os.utime(images[5], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # image touched
    assert cache.cache_key(images, PREP) != key
    shutil.copyfile(images[6], images[5])  # image replaced by another
    rebuilt = cache.load_images(images, PREP, cache_dir=root).pixels
    np.testing.assert_array_equal(rebuilt[5], rebuilt[6])
    assert len(list(root.glob("*.npy"))) == 2


def test_interrupted_build_is_never_used(
    images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "c"
    real = images_module.load_image
    calls = {"n": 0}

    def interrupting(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images_module, "load_image", interrupting)
    with pytest.raises(KeyboardInterrupt):
        cache.load_images(images, PREP, cache_dir=root, workers=1)
    assert list(root.iterdir()) == []  # no final file, no temporary left behind
    monkeypatch.setattr(images_module, "load_image", real)
    full = cache.load_images(images, PREP, cache_dir=root).pixels
    np.testing.assert_array_equal(full[39], load_image(images[39], PREP))


def test_without_cache_nothing_is_written(images: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "c"
    arr = cache.load_images(images, PREP, cache_dir=root, use_cache=False).pixels
    assert arr.shape == (40, 1, 32, 32) and not root.exists()


def test_cache_location_follows_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GALAXYZOO_CACHE_DIR", str(tmp_path / "x"))
    assert cache.cache_root() == tmp_path / "x"
    monkeypatch.delenv("GALAXYZOO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "galaxyzoo-cli"
