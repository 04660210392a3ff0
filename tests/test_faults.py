"""Faults and concurrency with real processes and real signals: Ctrl-C, SIGKILL mid-write, two
trainings at once, a failing or killed rank under torchrun, and a two-"node" torchrun."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from galaxyzoo_cli.data.cache import cache_key, load_images
from galaxyzoo_cli.data.catalogue import (
    LABELS_CSV,
    TEST_IMAGES,
    TRAIN_IMAGES,
    list_images,
    write_labels,
)
from galaxyzoo_cli.data.fetch import ARCHIVE_NAME, ARCHIVES_DIR, MARKER
from galaxyzoo_cli.data.images import InputSpec, load_image
from galaxyzoo_cli.training.run_folder import load_checkpoint, read_metrics

pytestmark = pytest.mark.slow  # real processes and signals: `pytest -m slow` (CI runs both)

CLI = [sys.executable, "-m", "galaxyzoo_cli"]
TINY = ["--model", "test_tiny", "--batch-size", "16", "--device", "cpu"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "GALAXYZOO_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path_glob: tuple[Path, str], proc: subprocess.Popen[str], timeout: float) -> None:
    folder, pattern = path_glob
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if folder.is_dir() and any(folder.glob(pattern)):
            return
        time.sleep(0.02)
    raise AssertionError(f"{pattern} never appeared in {folder}")


@pytest.fixture(scope="module")
def many(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder of 6,000 labelled images (links to the synthetic ones): slow enough to
    decode that a process can be stopped in the middle."""
    data = tmp_path_factory.mktemp("many") / "data"
    (data / TRAIN_IMAGES).mkdir(parents=True)
    (data / TEST_IMAGES).mkdir()
    _, paths = list_images(synthetic_data / TRAIN_IMAGES)
    ids = np.arange(200000, 206000)
    for i, gid in enumerate(ids):
        os.link(paths[i % len(paths)], data / TRAIN_IMAGES / f"{gid}.jpg")
        os.link(paths[i % len(paths)], data / TEST_IMAGES / f"{gid + 10000}.jpg")
    rows = np.random.default_rng(0).dirichlet(np.ones(3), len(ids))
    labels = np.full((len(ids), 37), np.nan)
    labels[:, :3] = rows
    write_labels(data / LABELS_CSV, ids, labels)
    return data


def test_ctrl_c_during_training_exits_130_and_names_the_resume(
    synthetic_data: Path, tmp_path: Path
) -> None:
    args = [*CLI, "train", *TINY, "--epochs", "10000", "--patience", "0", "--name", "cc",
            "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path)]  # fmt: skip
    proc = _start(args, _env(tmp_path / "cache"))
    _wait_for((tmp_path / "cc" / "weights", "last.pt"), proc, 120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted after epoch" in err and f"--resume {tmp_path / 'cc'}" in err
    assert "Traceback" not in err
    assert load_checkpoint(tmp_path / "cc" / "weights" / "last.pt").progress.epoch >= 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_schedulers_signal_stops_training_like_ctrl_c_and_the_run_resumes(
    synthetic_data: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    env = _env(tmp_path / "cache")
    args = [*CLI, "train", *TINY, "--epochs", "10000", "--patience", "0", "--name", "cc",
            "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path)]  # fmt: skip
    proc = _start(args, env)
    _wait_for((tmp_path / "cc" / "weights", "last.pt"), proc, 120)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err  # 143 for SIGTERM, 138 for SIGUSR1
    assert f"stopped by {sig.name} after epoch" in err and "Traceback" not in err
    kept = load_checkpoint(tmp_path / "cc" / "weights" / "last.pt").progress.epoch
    assert f"weights/last.pt holds epoch {kept}. Continue with: galaxyzoo train --resume " in err
    assert json.loads((tmp_path / "cc" / "status.json").read_text())["status"] == "interrupted"
    assert not list(tmp_path.rglob(".*.tmp"))
    resumed = subprocess.run(
        [*CLI, "train", "--resume", str(tmp_path / "cc"), "--epochs", str(kept + 1)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_metrics(tmp_path / "cc")) == kept + 1


def _train_run_p(many: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """A one-epoch run ``tmp_path/runs/p`` on 50 galaxies, for the predict faults."""
    train = subprocess.run(
        [*CLI, "train", *TINY, "--epochs", "1", "--limit", "50", "--data-dir", str(many),
         "--runs-dir", str(tmp_path / "runs"), "--name", "p"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr


def test_sigterm_stops_select_init_and_predict(many: Path, tmp_path: Path) -> None:
    env = _env(tmp_path / "cache")
    proc = _start([*CLI, "select-init", *TINY, "--trials", "1000", "--epochs", "2", "--limit",
                   "200", "--name", "s", "--data-dir", str(many), "--runs-dir",
                   str(tmp_path / "runs")], env)  # fmt: skip
    _wait_for((tmp_path / "runs" / "s", "trials.csv"), proc, 120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Error: stopped by SIGTERM" in err, err  # in/after a trial
    _train_run_p(many, tmp_path, env)
    out = tmp_path / "sub.csv"
    proc = _start([*CLI, "predict", str(tmp_path / "runs" / "p"), "--workers", "1", "--out",
                   str(out)], env)  # fmt: skip
    _wait_for((tmp_path / "cache", ".*.npy*.tmp"), proc, 120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.splitlines()[-1] == "Error: stopped by SIGTERM.", err
    assert not out.exists() and not list((tmp_path / "cache").glob(".*.tmp"))


def test_two_trainings_at_once_share_one_valid_cache(many: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = [*CLI, "train", *TINY, "--epochs", "1", "--limit", "6000", "--data-dir", str(many)]
    procs = [_start([*args, "--runs-dir", str(tmp_path / f"r{i}")], _env(cache)) for i in (1, 2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert len(list(cache.glob("*.npy"))) == 1 and len(list(cache.glob("*.json"))) == 1
    assert not list(cache.glob(".*tmp"))
    _, paths = list_images(many / TRAIN_IMAGES)
    spec = InputSpec(channels=1, crop=256, size=24)
    decoded = load_images(paths, spec, cache_dir=cache)
    assert decoded.pixels.shape == (6000, 1, 24, 24) and not decoded.unreadable
    for i in (0, 2999, 5999):
        np.testing.assert_array_equal(decoded.pixels[i], load_image(paths[i], spec))


def test_a_killed_cache_build_is_never_trusted(many: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = [*CLI, "train", *TINY, "--epochs", "1", "--workers", "1", "--data-dir", str(many),
            "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    proc = _start(args, _env(cache))
    _wait_for((cache, ".*.npy*.tmp"), proc, 120)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    _, paths = list_images(many / TRAIN_IMAGES)
    spec = InputSpec(channels=1, crop=256, size=24)
    assert not (cache / f"{cache_key(paths, spec)}.npy").exists()  # only the temporary
    decoded = load_images(paths, spec, cache_dir=cache)
    np.testing.assert_array_equal(decoded.pixels[5999], load_image(paths[5999], spec))


def test_a_killed_predict_leaves_no_submission(many: Path, tmp_path: Path) -> None:
    env = _env(tmp_path / "cache")
    _train_run_p(many, tmp_path, env)
    out = tmp_path / "out" / "sub.csv"
    proc = _start([*CLI, "predict", str(tmp_path / "runs" / "p"), "--tta", "8", "--workers", "1",
                   "--out", str(out)], env)  # fmt: skip
    _wait_for((tmp_path / "cache", "*.npy*"), proc, 120)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    again = subprocess.run([*CLI, "predict", str(tmp_path / "runs" / "p"), "--out", str(out)],
                           env=env, capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert len(out.read_text().splitlines()) == 6001


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_killed_fetch_extraction_is_redone(many: Path, tmp_path: Path) -> None:
    ids, paths = list_images(many / TRAIN_IMAGES)
    jpeg = paths[0].read_bytes()
    archive = _zip(
        {
            "images_training_rev1.zip": _zip({f"{i}.jpg": jpeg for i in ids}, zipfile.ZIP_STORED),
            "images_test_rev1.zip": _zip({f"{i + 10000}.jpg": jpeg for i in ids}),
            "training_solutions_rev1.zip": _zip({LABELS_CSV: (many / LABELS_CSV).read_bytes()}),
        },
        zipfile.ZIP_STORED,
    )
    data = tmp_path / "data"
    (data / ARCHIVES_DIR).mkdir(parents=True)
    (data / ARCHIVES_DIR / ARCHIVE_NAME).write_bytes(archive)
    env = {**_env(tmp_path / "cache"), "KAGGLE_CONFIG_DIR": str(tmp_path / "no-kaggle")}
    args = [*CLI, "fetch", "--data-dir", str(data), "--keep-archives", "--json"]
    proc = _start(args, env)
    _wait_for((data / ".galaxyzoo-fetch" / "extract" / TRAIN_IMAGES, "*.jpg"), proc, 120)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (data / MARKER).exists()
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["n_train_images"] == 6000 and report["n_test_images"] == 6000
    assert (data / MARKER).is_file()


# --- torchrun ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args, "-m", "galaxyzoo_cli"]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _rank_of(pid: int) -> int | None:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"RANK=")]
    return ranks[0] if ranks else None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")
def test_a_killed_rank_stops_the_whole_run(synthetic_data: Path, tmp_path: Path) -> None:
    args = _torchrun("--nproc-per-node", "2", "--master-port", str(_free_port())) + [
        "train", *TINY, "--epochs", "10000", "--patience", "0", "--name", "k",
        "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path),
    ]  # fmt: skip
    proc = _start(args, _env(tmp_path / "cache"))
    _wait_for((tmp_path / "k" / "weights", "last.pt"), proc, 180)
    rank1 = next(pid for pid in _children(proc.pid) if _rank_of(pid) == 1)
    os.kill(rank1, signal.SIGKILL)
    start = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and time.monotonic() - start < 60
    assert "galaxyzoo_cli" in err  # torchrun names the failed worker


def test_bad_input_on_one_rank_stops_every_rank(synthetic_data: Path, tmp_path: Path) -> None:
    """Only rank 0 writes the run folder, so only rank 0 finds that --runs-dir is a file."""
    runs = tmp_path / "runs"
    runs.write_text("a file, not a folder")
    args = _torchrun("--nproc-per-node", "2", "--master-port", str(_free_port())) + [
        "train", *TINY, "--epochs", "2", "--data-dir", str(synthetic_data), "--runs-dir", str(runs),
    ]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(args, env=_env(tmp_path / "cache"), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode != 0 and time.monotonic() - start < 120
    assert f"Error: --runs-dir {runs}: is a file" in done.stderr


def test_two_nodes_on_one_machine_train_together(synthetic_data: Path, tmp_path: Path) -> None:
    port = str(_free_port())
    procs = [
        _start(
            _torchrun(
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(node),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                port,
            )
            + [
                "train",
                *TINY,
                "--epochs",
                "2",
                "--name",
                "two",
                "--json",
                "--data-dir",
                str(synthetic_data),
                "--runs-dir",
                str(tmp_path),
            ],
            _env(tmp_path / f"cache{node}"),
        )  # fmt: skip
        for node in (0, 1)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    assert json.loads(outs[0][0])["epochs_run"] == 2 and outs[1][0] == ""  # rank 0 reports
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and "cache" not in p.name) == [
        "two"
    ]
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["world_size"] == 2
    assert [r["epoch"] for r in read_metrics(tmp_path / "two")] == [1, 2]
