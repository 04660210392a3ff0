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
from galaxyzoo_cli.errors import JobFailedError
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


def test_batches_are_read_from_the_cache_file(images: list[Path], tmp_path: Path) -> None:
    """Training and prediction read their rows from the cache file, not through the mapping:
    the same pixels, in the asked order (repeats included), as new writable arrays."""
    pixels = cache.load_images(images, PREP, cache_dir=tmp_path / "c", workers=2).pixels
    assert isinstance(pixels, np.memmap)
    rows = np.array([39, 0, 17, 17, 5])
    for got in (cache.take_rows(pixels, rows), cache.Rows(pixels, np.arange(40)).take(rows)):
        np.testing.assert_array_equal(got, np.asarray(pixels)[rows])
        assert got.flags.writeable and not isinstance(got, np.memmap)
    assert cache.take_rows(pixels, np.array([], dtype=int)).shape == (0, 1, 32, 32)
    with open(pixels.filename, "r+b") as f:  # another program cuts the file while it is in use
        f.truncate(pixels.offset + 10 * 32 * 32)
    with pytest.raises(JobFailedError, match="galaxyzoo cache clear"):
        cache.take_rows(pixels, np.array([3, 20]))


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


def test_the_cache_command_lists_and_clears(
    images: list[Path], synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import time

    from typer.testing import CliRunner

    from galaxyzoo_cli.cli import app

    runner = CliRunner()
    root = tmp_path / "c"
    monkeypatch.setenv("GALAXYZOO_CACHE_DIR", str(root))
    cache.load_images(images, PREP)
    other = list_images(synthetic_data / TRAIN_IMAGES)[1][:10]
    cache.load_images(other, PREP)
    stale = root / ".abc.npy.123.tmp"  # an interrupted build, an hour old
    stale.write_bytes(b"x" * 100)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    listed = json.loads(runner.invoke(app, ["cache", "--json"]).stdout)
    assert len(listed["caches"]) == 3 and listed["bytes"] > 40 * 32 * 32
    sizes = sorted(c["n_images"] for c in listed["caches"] if c["complete"])
    assert sizes == [10, 40] and [c["complete"] for c in listed["caches"]].count(False) == 1
    mine = json.loads(
        runner.invoke(app, ["cache", "list", "--data-dir", str(images[0].parent), "--json"]).stdout
    )
    assert [c["n_images"] for c in mine["caches"]] == [40]
    human = runner.invoke(app, ["cache"]).stdout
    assert "40 images" in human and "gray crop 256 → 32 px" in human
    cleared = json.loads(
        runner.invoke(app, ["cache", "clear", "--data-dir", str(images[0].parent), "--json"]).stdout
    )
    assert cleared["removed"] == 1 and cleared["freed_bytes"] > 40 * 32 * 32
    left = json.loads(runner.invoke(app, ["cache", "--json"]).stdout)["caches"]
    assert sorted(c["n_images"] for c in left) == [0, 10]
    # Everything: not without a question (no terminal here: refused, naming the way out).
    refused = runner.invoke(app, ["cache", "clear"])
    assert refused.exit_code == 2 and "--all" in refused.stderr and "2 caches" in refused.stderr
    assert len(json.loads(runner.invoke(app, ["cache", "--json"]).stdout)["caches"]) == 2
    assert runner.invoke(app, ["cache", "clear", "--all"]).exit_code == 0
    assert not list(root.iterdir())


class _Recorder:
    """A reporter that keeps the messages."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def task(self, description: str, total: float | None):  # type: ignore[no-untyped-def]
        import contextlib

        return contextlib.nullcontext(type("T", (), {"advance": lambda self, n=1: None})())

    def log(self, message: str) -> None:
        self.said.append(message)


def test_a_cache_that_would_not_fit_is_refused_or_skipped(
    images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from galaxyzoo_cli.errors import BadInputError

    root = tmp_path / "c"
    real = shutil.disk_usage
    tight = lambda p: real(p)._replace(free=cache.DISK_MARGIN + 1000)  # noqa: E731
    monkeypatch.setattr(cache.shutil, "disk_usage", tight)
    # Asked for (--cache): a clear refusal naming the sizes and the ways out.
    with pytest.raises(BadInputError, match=r"needs 41.0 KB and only 1\.1 GB is free.*--no-cache"):
        cache.load_images(images, PREP, cache_dir=root, use_cache=True)
    # By default: decoded as needed instead, and said so.
    rec = _Recorder()
    lazy = cache.load_images(images, PREP, cache_dir=root, reporter=rec)
    assert isinstance(lazy.pixels, cache.LazyPixels) and not list(root.glob("*.npy"))
    assert any("no room for a 41.0 KB cache" in m for m in rec.said)
    np.testing.assert_array_equal(lazy.pixels[np.array([3, 39])][1], load_image(images[39], PREP))
    monkeypatch.setattr(cache.shutil, "disk_usage", real)
    rec = _Recorder()
    cache.load_images(images, PREP, cache_dir=root, reporter=rec)
    assert any("Caching the decoded images: 41.0 KB" in m and "free" in m for m in rec.said)


def test_large_inputs_are_decoded_as_needed(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the size limit no cache is built: training reads the images as it goes."""
    from galaxyzoo_cli.settings import TrainConfig
    from galaxyzoo_cli.training import train

    monkeypatch.setattr(cache, "CACHE_AUTO_LIMIT", 1000)
    root = Path(os.environ["GALAXYZOO_CACHE_DIR"]) / "lazy"
    monkeypatch.setenv("GALAXYZOO_CACHE_DIR", str(root))
    result = train(TrainConfig(model="test_tiny", epochs=2, device="cpu"),
                   data_dir=synthetic_data, runs_dir=tmp_path)  # fmt: skip
    assert result.n_train + result.n_val == 120 and result.best_val_rmse < 1
    assert not root.exists() or not list(root.glob("*.npy"))


def test_training_estimates_the_epoch(synthetic_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from galaxyzoo_cli.cli import app

    result = CliRunner().invoke(
        app, ["train", "--model", "test_tiny", "--batch-size", "4", "--epochs", "2", "--device",
              "cpu", "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "s per epoch (" in result.stderr and "min for 2 epochs" in result.stderr
