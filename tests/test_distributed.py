"""torchrun: DistributedDataParallel over two CPU processes (gloo); only rank 0 writes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from galaxyzoo_cli.training.run_folder import load_checkpoint, read_metrics

pytestmark = pytest.mark.slow  # torchrun processes: `pytest -m slow` (CI runs both)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(data_dir: Path, runs: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(_free_port()), "-m", "galaxyzoo_cli", "train", "--model", "test_tiny",
        "--epochs", "2", "--batch-size", "16", "--device", "cpu", "--name", "ddp",
        "--data-dir", str(data_dir), "--runs-dir", str(runs), "--json",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_torchrun_two_cpu_processes(synthetic_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = _torchrun(synthetic_data, runs)
    errors = [line for line in proc.stderr.splitlines() if "rror" in line or "terminate" in line]
    assert proc.returncode == 0, "\n".join(errors[:20]) + proc.stderr[-2000:]
    assert sorted(p.name for p in runs.iterdir()) == ["ddp"]  # one folder, written by rank 0
    config = json.loads((runs / "ddp" / "config.json").read_text())
    assert config["world_size"] == 2
    assert json.loads(proc.stdout)["epochs_run"] == 2  # one JSON object: rank 0's
    assert "rank 0 of 2" in proc.stderr and "rank 1 of 2" in proc.stderr
    assert [r["epoch"] for r in read_metrics(runs / "ddp")] == [1, 2]
    assert load_checkpoint(runs / "ddp" / "weights" / "last.pt").progress.epoch == 2
