"""Beyond the Kaggle folder: export for deployment, the HTML report (rendered in headless
Chromium), the leaderboard of runs, and TensorBoard logging."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.schema import COLUMNS
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.data.catalogue import TEST_IMAGES, list_images
from galaxyzoo_cli.data.images import InputSpec, load_image
from galaxyzoo_cli.training.loop import train

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small finished runs (galaxynet-s, RGB; test_tiny, grayscale) in one runs folder."""
    root = tmp_path_factory.mktemp("beyond")
    return [
        train(
            TrainConfig(model=m, epochs=e, device="cpu", patience=0),
            data_dir=synthetic_data,
            runs_dir=root / "runs",
        ).run_dir  # fmt: skip
        for m, e in (("galaxynet-s", 2), ("test_tiny", 3))
    ]


# --- export -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_matches_predict(
    runs: list[Path], synthetic_data: Path, tmp_path: Path, fmt: str
) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
        ort = pytest.importorskip("onnxruntime")
    run = runs[0]
    out = tmp_path / f"model.{fmt}"
    result = runner.invoke(app, ["export", str(run), "--format", fmt, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["max_abs_difference"] <= 1e-5
    spec = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    assert spec["input"]["shape"] == ["batch", 3, 64, 64] and spec["input"]["crop"] == 256
    assert spec["input"]["value_range"] == [0.0, 1.0] and spec["output"]["columns"] == list(COLUMNS)
    # What the exported file says for real images, against the submission predict writes.
    sub = tmp_path / "sub.csv"
    assert (
        runner.invoke(app, ["predict", str(run), "--out", str(sub), "--device", "cpu"]).exit_code
        == 0
    )
    with sub.open() as f:
        rows = {int(r["GalaxyID"]): [float(r[c]) for c in COLUMNS] for r in csv.DictReader(f)}
    ids, paths = list_images(synthetic_data / TEST_IMAGES)
    inp = InputSpec(channels=3, crop=256, size=64)
    images = np.stack([load_image(p, inp) for p in paths]).astype(np.float32) / 255.0
    if fmt == "onnx":
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": images})[0]
    else:
        import torch

        got = torch.jit.load(str(out))(torch.from_numpy(images)).detach().numpy()
    expected = np.array([rows[int(i)] for i in ids])
    assert np.abs(got - expected).max() <= 1e-4


def test_export_errors_are_clear(runs: list[Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(runs[0]), "--format", "tflite"])
    assert result.exit_code == 2 and "tflite" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such run folder" in result.stderr


# --- report -------------------------------------------------------------------------------------

_CHROMIUM_OWN = re.compile(rb"(google\.com|gstatic\.com|googleapis\.com|gvt1\.com)")
"""Chromium's own background services: the only requests allowed during a render."""


def _render(page: Path, shot: Path) -> list[bytes]:
    """Screenshot ``page`` in headless Chromium behind a recording proxy; the page's requests."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):  # .ci/run installs it: a skip there would go unnoticed
            pytest.fail("chromium is missing in CI: .ci/run should have installed it")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.3)
    seen: list[bytes] = []
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                seen.append(conn.recv(300))
            except OSError:
                pass
            conn.close()

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--window-size=1200,2400",
             f"--proxy-server=http://127.0.0.1:{server.getsockname()[1]}",
             "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=5000",
             f"--screenshot={shot}", page.as_uri()],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
    time.sleep(0.5)
    stop.set()
    thread.join()
    server.close()
    return [r for r in seen if not _CHROMIUM_OWN.search(r.split(b"\r\n")[0])]


@pytest.mark.slow  # a real browser process
def test_report_is_self_contained_and_renders(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(
        app, ["report", *(str(r) for r in runs), "--out", str(out), "--device", "cpu", "--json"]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Comparison" in page and "Best predicted" in page and "Worst predicted" in page
    assert page.count("<img") == 2 * (3 + 2 * 6) + 1  # per run 3 figures, 2 galleries; compare
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)  # nothing fetched
    requests = _render(out, tmp_path / "shot.png")
    assert requests == []
    with Image.open(tmp_path / "shot.png") as shot:
        pixels = np.asarray(shot.convert("L"), dtype=np.float64)
    assert pixels.std() > 20 and (pixels < 100).mean() > 0.01  # text and figures, not blank
    # The check itself can fail: a page that fetches something is caught.
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><img src="http://example.com/x.png">hello</body></html>')
    assert any(b"example.com" in r for r in _render(leaky, tmp_path / "leaky.png"))


# --- the leaderboard ----------------------------------------------------------------------------


def test_runs_leaderboard(runs: list[Path], tmp_path: Path) -> None:
    root = Path(shutil.copytree(runs[0].parent, tmp_path / "runs"))
    killed = root / runs[1].name
    status = json.loads((killed / "status.json").read_text())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (killed / "status.json").write_text(
        json.dumps({**status, "status": "running", "pid": int(dead)})
    )
    result = runner.invoke(app, ["runs", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["runs"]}
    first = rows[runs[0].name]
    assert first["model"] == "galaxynet-s" and (first["epochs"], first["epochs_asked"]) == (2, 2)
    assert first["status"] == "finished" and first["val_rmse"] > 0
    assert rows[killed.name]["status"] == "interrupted"
    human = runner.invoke(app, ["runs", str(root), "--sort", "name"]).stdout.splitlines()
    assert human[0].split()[:2] == ["run", "model"] and human[1].startswith(runs[0].name)
    assert runner.invoke(app, ["runs", str(root), "--sort", "colour"]).exit_code == 2
    assert runner.invoke(app, ["runs", str(tmp_path / "none")]).exit_code == 2


def test_runs_shows_the_kept_epochs_rmse_and_reads_summary_json(tmp_path: Path) -> None:
    """A bce run keeps the epoch of lowest validation loss: the leaderboard shows that epoch's
    RMSE (0.1400, epoch 2), not the lowest RMSE (0.1300, epoch 3); from summary.json when there
    is one, else rebuilt from metrics.csv and config.json (a run older than summary.json)."""
    from galaxyzoo_cli.core.summary import read_summary, write_summary

    root = tmp_path / "runs"
    old, new = root / "old", root / "new"
    for run_dir in (old, new):
        run_dir.mkdir(parents=True)
        config = {
            "created": "2026-01-02T03:04:05+0000",
            "settings": {"epochs": 5, "loss": "bce"},
            "model": {"name": "test_tiny", "task": {"kind": "tree", "targets": []}},
        }
        (run_dir / "config.json").write_text(json.dumps(config))
        (run_dir / "metrics.csv").write_text(
            "epoch,train_loss,val_loss,val_rmse,lr,seconds\n"
            "1,0.620,0.560,0.1500,0.002,30\n"
            "2,0.550,0.540,0.1400,0.002,30\n"
            "3,0.500,0.550,0.1300,0.001,30\n"
        )
    summary = read_summary(new)
    assert summary is not None
    write_summary(new, {**summary, "train_seconds": 600.0})
    (new / "metrics.csv").unlink()  # what runs shows comes from summary.json alone

    result = runner.invoke(app, ["runs", str(root), "--json"])

    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["runs"]}
    for name, minutes in (("old", 1.5), ("new", 10.0)):
        row = rows[name]
        assert row["val_rmse"] == 0.14, name
        assert (row["epochs"], row["epochs_asked"], row["minutes"]) == (3, 5, minutes), name
        assert (row["model"], row["task"], row["date"]) == (
            "test_tiny",
            "tree",
            "2026-01-02T03:04:05+0000",
        )
    line = next(x for x in runner.invoke(app, ["runs", str(root)]).stdout.splitlines()
                if x.startswith("old"))  # fmt: skip
    assert "0.14000" in line and "0.13000" not in line and "3/5" in line


# --- TensorBoard --------------------------------------------------------------------------------


def test_tensorboard_log_is_read_back(synthetic_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(
        TrainConfig(model="test_tiny", epochs=3, device="cpu", patience=0, log="tensorboard"),  # type: ignore[arg-type]
        data_dir=synthetic_data,
        runs_dir=tmp_path,
    ).run_dir
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/train", "loss/validation", "rmse/validation", "learning_rate"} <= set(
        tags["scalars"]
    )
    assert [e.step for e in events.Scalars("rmse/validation")] == [1, 2, 3]
    with (run / "metrics.csv").open() as f:
        rmse = [float(r["val_rmse"]) for r in csv.DictReader(f)]
    assert [e.value for e in events.Scalars("rmse/validation")] == pytest.approx(rmse, rel=1e-5)
    assert "curves" in tags["images"]


def test_tensorboard_missing_is_a_clear_error(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    result = runner.invoke(
        app, ["train", "--model", "test_tiny", "--log", "tensorboard", "--data-dir",
              str(synthetic_data), "--runs-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2 and "galaxyzoo-cli[tensorboard]" in result.stderr
    assert not any(tmp_path.iterdir())
