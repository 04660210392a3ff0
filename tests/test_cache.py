"""The preprocessed-image cache: reuse, invalidation and interrupt safety."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import galaxyzoo_cli.data.cache as cache
import galaxyzoo_cli.data.images as images_module
from galaxyzoo_cli.core import errors
from galaxyzoo_cli.core.errors import JobFailedError
from galaxyzoo_cli.data.catalogue import TRAIN_IMAGES, list_images
from galaxyzoo_cli.data.images import InputSpec, load_image

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
    for got in (cache.copy_rows(pixels, rows), cache.Rows(pixels, np.arange(40))[rows]):
        np.testing.assert_array_equal(got, np.asarray(pixels)[rows])
        assert got.flags.writeable and not isinstance(got, np.memmap)
    assert cache.copy_rows(pixels, np.array([], dtype=int)).shape == (0, 1, 32, 32)
    with open(pixels.filename, "r+b") as f:  # another program cuts the file while it is in use
        f.truncate(pixels.offset + 10 * 32 * 32)
    with pytest.raises(JobFailedError, match="galaxyzoo cache clear"):
        cache.copy_rows(pixels, np.array([3, 20]))


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
    from galaxyzoo_cli.core.errors import BadInputError

    root = tmp_path / "c"
    real = shutil.disk_usage
    tight = lambda p: real(p)._replace(free=cache.DISK_MARGIN + 1000)  # noqa: E731
    monkeypatch.setattr(errors.shutil, "disk_usage", tight)
    # Asked for (--cache): a clear refusal naming the sizes and the ways out.
    with pytest.raises(BadInputError, match=r"needs 41.0 KB and only 1\.1 GB is free.*--no-cache"):
        cache.load_images(images, PREP, cache_dir=root, use_cache=True)
    # By default: decoded as needed instead, and said so.
    rec = _Recorder()
    lazy = cache.load_images(images, PREP, cache_dir=root, reporter=rec)
    assert isinstance(lazy.pixels, cache.LazyPixels) and not list(root.glob("*.npy"))
    assert any("no room for a 41.0 KB cache" in m for m in rec.said)
    np.testing.assert_array_equal(lazy.pixels[np.array([3, 39])][1], load_image(images[39], PREP))
    monkeypatch.setattr(errors.shutil, "disk_usage", real)
    rec = _Recorder()
    cache.load_images(images, PREP, cache_dir=root, reporter=rec)
    assert any("Caching the decoded images: 41.0 KB" in m and "free" in m for m in rec.said)


def test_large_inputs_are_decoded_as_needed(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the size limit no cache is built: training reads the images as it goes."""
    from galaxyzoo_cli.core.settings import TrainConfig
    from galaxyzoo_cli.training.loop import train

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


def test_a_subset_reads_rows_of_the_folders_cache(
    images: list[Path], tmp_path: Path, decodes: list[Path]
) -> None:
    """Asked for some rows of a folder's images, the cache of the whole folder is built once and
    every subset reads its rows: no second cache, no second decode."""
    root = tmp_path / "c"
    bad = images[5]
    bad.write_bytes(b"not a jpeg")
    rows = np.array([30, 5, 2])
    part = cache.load_images(images, PREP, rows=rows, cache_dir=root)
    assert len(part) == 3 and part.unreadable.keys() == {1} and list(part.readable) == [1, 0, 1]
    np.testing.assert_array_equal(part.select(np.array([0, 2]))[np.array([1, 0])],
                                  np.stack([load_image(images[2], PREP),
                                            load_image(images[30], PREP)]))  # fmt: skip
    n = len(decodes)
    assert n == 40  # the whole folder, once
    other = cache.load_images(images, PREP, rows=np.arange(10, 20), cache_dir=root)
    assert len(decodes) == n and len(list(root.glob("*.npy"))) == 1
    assert other.unreadable == {} and len(other) == 10
    # Decoded as needed (no cache): only the rows asked for are looked at.
    lazy = cache.load_images(images, PREP, rows=rows, cache_dir=tmp_path / "none", use_cache=False)
    assert lazy.unreadable.keys() == {1} and len(decodes) == n + 3
    np.testing.assert_array_equal(lazy.select(np.array([0]))[np.array([0])][0],
                                  load_image(images[30], PREP))  # fmt: skip


@pytest.mark.slow
def test_train_evaluate_and_plot_share_one_cache(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's training (both splits), its evaluation and its figures read one cache of its
    images: its first --limit galaxies (a quick run does not decode the whole folder), or the
    whole folder, whose cache a later limited run reads rows of."""
    from galaxyzoo_cli.core.settings import EvaluateSettings, TrainConfig
    from galaxyzoo_cli.inference import evaluate
    from galaxyzoo_cli.outputs.figure_data import plot_runs
    from galaxyzoo_cli.training.loop import train

    root = tmp_path / "cache"
    monkeypatch.setenv("GALAXYZOO_CACHE_DIR", str(root))
    for limit, sizes in ((60, [60]), (None, [60, 120]), (40, [60, 120])):
        config = TrainConfig(model="test_tiny", epochs=1, device="cpu", image_size=32, limit=limit)
        run = train(config, data_dir=synthetic_data, runs_dir=tmp_path / f"runs-{limit}").run_dir
        evaluate(run)
        evaluate(run, EvaluateSettings(split="train"))
        plot_runs([run])
        about = [json.loads(p.read_text()) for p in root.glob("*.json")]
        assert sorted(a["n_images"] for a in about) == sizes, limit
        assert len(list(root.glob("*.npy"))) == len(sizes) and not list(root.glob(".*"))
    assert {a["folder"] for a in about} == {str((synthetic_data / TRAIN_IMAGES).resolve())}


def test_the_cache_is_found_by_any_spelling_of_its_folder(
    images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images given by relative paths are recorded by absolute ones, and `--data-dir` matches
    whatever way it is written; so do caches that recorded a relative path (0.2.0)."""
    from galaxyzoo_cli.cli import app

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    shutil.move(images[0].parent, project / "data" / "images")
    monkeypatch.chdir(project)
    relative = [Path("data/images") / p.name for p in images]
    root = tmp_path / "c"
    monkeypatch.setenv("GALAXYZOO_CACHE_DIR", str(root))
    cache.load_images(relative[:10], PREP)
    (about,) = root.glob("*.json")
    assert json.loads(about.read_text())["folder"] == str(project / "data" / "images")
    # A cache written by 0.2.0 from the project folder: a relative first image, no folder.
    old = root / ("0" * 32 + ".json")
    old.write_text(json.dumps({"preprocess": {}, "n_images": 3,
                               "first_image": "data/images/1.jpg"}))  # fmt: skip
    old.with_suffix(".npy").write_bytes(b"x" * 10)
    monkeypatch.chdir(tmp_path)  # listed from elsewhere
    for spelling in (str(project / "data"), "project/data", "project/data/images/../"):
        assert len(cache.list_caches(Path(spelling)).entries) == 2, spelling
    assert cache.list_caches(project / "elsewhere").entries == []
    out = CliRunner().invoke(app, ["cache", "clear", "--data-dir", "project/data", "--json"])
    assert json.loads(out.stdout)["removed"] == 2 and not list(root.iterdir())


def test_cache_clear_asks_on_a_terminal(
    images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import galaxyzoo_cli.cli.data as cli_data
    from galaxyzoo_cli.cli import app

    root = tmp_path / "c"
    monkeypatch.setenv("GALAXYZOO_CACHE_DIR", str(root))
    cache.load_images(images[:5], PREP)
    monkeypatch.setattr(cli_data, "_interactive", lambda: True)
    no = CliRunner().invoke(app, ["cache", "clear"], input="n\n")
    assert no.exit_code == 1 and "Remove all 1 cache in" in no.stderr
    assert len(list(root.glob("*.npy"))) == 1
    yes = CliRunner().invoke(app, ["cache", "clear"], input="y\n")
    assert yes.exit_code == 0 and not list(root.glob("*.npy"))
    cache.load_images(images[:5], PREP)
    monkeypatch.setattr(cli_data, "_interactive", lambda: False)
    assert CliRunner().invoke(app, ["cache", "clear", "--yes"]).exit_code == 0
    assert not list(root.glob("*.npy"))


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_a_failed_build_leaves_nothing_behind(
    images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt: type
) -> None:
    root = tmp_path / "c"
    real = cache.decode_into

    def fails(out, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(out[:3], *[a[:3] if isinstance(a, list) else a for a in args], **kwargs)
        assert list(root.glob(".*.npy.tmp"))  # being built under a temporary name
        raise interrupt("stopped")

    monkeypatch.setattr(cache, "decode_into", fails)
    with pytest.raises(interrupt):
        cache.load_images(list(images), PREP, cache_dir=root)
    assert not list(root.iterdir())


def test_a_build_killed_before_cleaning_up_is_removed_later(
    images: list[Path], tmp_path: Path
) -> None:
    import subprocess
    import sys
    import time

    root = tmp_path / "c"
    root.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    host = cache._host()
    orphan = root / f".{'a' * 32}.{dead}-{host}.npy.tmp"
    running = root / f".{'b' * 32}.{os.getppid()}-{host}.npy.tmp"  # a build still in progress
    elsewhere = root / f".{'c' * 32}.{dead}-another-machine.npy.tmp"  # a shared folder
    for f in (orphan, running, elsewhere):
        f.write_bytes(b"x" * 100)
    listed = cache.list_caches(cache_dir=root)
    assert [e.complete for e in listed.entries] == [False, False, False]
    cache.load_images(images[:4], PREP, cache_dir=root)
    assert not orphan.exists() and running.exists() and elsewhere.exists()
    cleared = cache.clear_caches(cache_dir=root)
    assert cleared.removed == 1 and running.exists()  # the finished cache, not the live builds
    os.utime(elsewhere, (time.time() - 90_000, time.time() - 90_000))  # a day untouched
    assert cache.clear_caches(cache_dir=root).removed == 1 and not elsewhere.exists()


def test_a_user_without_a_home_folder_gets_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HOME unset (no passwd entry) or pointing nowhere: the cache goes to the temporary
    folder, said once on stderr; free space is probed at the nearest existing folder."""
    import tempfile

    monkeypatch.delenv("GALAXYZOO_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(cache, "_SAID_FALLBACK", False)
    monkeypatch.setenv("HOME", str(tmp_path / "nowhere"))
    expected = tmp_path / "tmp" / f"galaxyzoo-cli-cache-{os.getuid()}"
    assert cache.cache_root() == expected and cache.cache_root() == expected
    assert capsys.readouterr().err.count("No home folder") == 1

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("HOME")
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert cache.cache_root() == expected
    assert cache.free_space(tmp_path / "not" / "yet" / "made") > 0


@pytest.mark.slow
@pytest.mark.parametrize("home", ["nowhere", None])
def test_training_runs_without_a_home_folder(
    synthetic_data: Path, tmp_path: Path, home: str | None
) -> None:
    """The CLI itself, in a fresh process with HOME pointing nowhere or unset and no cache
    variables: it trains (the cache in the temporary folder) instead of a traceback."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("HOME", "GALAXYZOO_CACHE_DIR", "XDG_CACHE_HOME")}  # fmt: skip
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    # HOME unset: Python falls back to the passwd entry, so a user without one is played by
    # making that lookup fail as it does then (RuntimeError).
    prelude = "" if home is not None else (
        "import pathlib\n"
        "def nohome(): raise RuntimeError('Could not determine home directory.')\n"
        "pathlib.Path.home = staticmethod(nohome)\n"
    )  # fmt: skip
    if home is not None:
        env["HOME"] = str(tmp_path / home)
    script = (
        prelude
        + "import sys\nfrom galaxyzoo_cli.cli import main\nsys.argv[0] = 'galaxyzoo'\nmain()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "train", "--model", "test_tiny", "--epochs", "1",
         "--image-size", "32", "--limit", "30", "--device", "cpu", "--data-dir",
         str(synthetic_data), "--runs-dir", str(tmp_path / "runs")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    cached = list((tmp_path / "tmp").glob("galaxyzoo-cli-cache-*/*.npy"))
    assert done.stderr.count("No home folder") == 1 and len(cached) == 1
