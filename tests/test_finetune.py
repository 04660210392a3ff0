"""finetune: a user's own labels (a flag, classes, fractions) learned from a run or a registry
model, and every command on the finetuned run. The labels are facts the synthetic generator
knows about its galaxies (spiral arms, the kind of galaxy, how featured it is)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.tasks import TREE, Task, TaskKind, roc_auc
from galaxyzoo_cli.data.catalogue import TRAIN_IMAGES
from galaxyzoo_cli.data.labels import (
    encode,
    infer_task,
    match_images,
    read_label_file,
    stratified_split,
)
from galaxyzoo_cli.data.synthetic import _galaxy_rng, galaxy_ids, sample_galaxy
from galaxyzoo_cli.models import ModelConfig, resolve_config
from galaxyzoo_cli.models.galaxy_model import create_model
from galaxyzoo_cli.training.finetune import finetune, finetune_config
from galaxyzoo_cli.training.run_folder import load_checkpoint

runner = CliRunner()
N, SEED = 120, 7  # the synthetic_data fixture


def _truth() -> list[dict[str, object]]:
    """What the generator drew for each labelled galaxy of the fixture."""
    rows = []
    for i, gid in enumerate(galaxy_ids(N, SEED)):
        p = sample_galaxy(_galaxy_rng(SEED, False, i))
        rows.append({"id": str(gid), "spiral": int(p.arms > 0), "kind": p.kind,
                     "featured": round(p.featured, 4), "bulge": round(p.bulge, 4)})  # fmt: skip
    return rows


def _write(path: Path, rows: list[dict[str, object]], columns: list[str]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("labels")
    return _write(folder / "labels.csv", _truth(), ["id", "spiral", "kind", "featured", "bulge"])


@pytest.fixture(scope="module")
def base_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run trained on the Kaggle-style labels: what finetune starts from."""
    runs = tmp_path_factory.mktemp("runs")
    r = runner.invoke(app, ["train", "--model", "test_tiny", "--epochs", "1", "--image-size",
                            "32", "--data-dir", str(synthetic_data), "--runs-dir", str(runs),
                            "--name", "base", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    return runs / "base"


@pytest.fixture(scope="module")
def tuned(base_run: Path, labels: Path, synthetic_data: Path) -> Path:
    """A run finetuned from ``base_run`` on the spiral flag, through the CLI."""
    r = runner.invoke(app, ["finetune", str(base_run), "--labels", str(labels), "--column",
                            "spiral", "--images", str(synthetic_data / TRAIN_IMAGES),
                            "--epochs", "3", "--head-epochs", "1", "--epoch-images", "64",
                            "--runs-dir", str(base_run.parent), "--name", "spiral",
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    return base_run.parent / "spiral"


# ---------------------------------------------------------------------------------------------
# The task a labels file implies
# ---------------------------------------------------------------------------------------------


def test_each_column_kind_is_inferred(labels: Path) -> None:
    task = infer_task(read_label_file(labels))
    kinds = {t.name: (t.kind, t.classes, t.columns) for t in task.targets}
    assert kinds["spiral"] == (TaskKind.BINARY, ("0", "1"), ("spiral",))
    assert kinds["kind"][0] == TaskKind.MULTICLASS
    assert set(kinds["kind"][1]) == {str(r["kind"]) for r in _truth()}
    # Two fraction columns make one regression target, last.
    assert task.targets[-1].kind == TaskKind.FRACTIONS
    assert task.targets[-1].columns == ("featured", "bulge")
    n_kinds = len(kinds["kind"][1])
    assert task.output_columns == (
        "spiral",
        *(f"kind={c}" for c in kinds["kind"][1]),
        "featured",
        "bulge",
    )
    assert task.n_outputs == 1 + n_kinds + 2
    y = encode(read_label_file(labels), task)
    assert y.shape == (N, 4) and set(np.unique(y[:, 0])) == {0.0, 1.0}


def test_missing_cells_are_masked_and_text_classes_work(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("id,ring,type\na,yes,E\nb,,S\nc,no,\nd,yes,S0\n")
    task = infer_task(read_label_file(path))
    ring, kind = task.targets
    assert (ring.kind, ring.classes, ring.outputs) == (TaskKind.BINARY, ("no", "yes"), ("ring",))
    assert kind.kind == TaskKind.MULTICLASS and kind.outputs == ("type=E", "type=S", "type=S0")
    y = encode(read_label_file(path), task)
    assert np.isnan(y[1, 0]) and np.isnan(y[2, 1]) and y[0, 0] == 1 and y[2, 0] == 0


def test_a_path_column_names_the_files(tmp_path: Path, synthetic_data: Path) -> None:
    images = sorted((synthetic_data / TRAIN_IMAGES).glob("*.jpg"))[:3]
    rows = [f"{Path('..') / 'x' / p.name},{i % 2}\n" for i, p in enumerate(images)]
    (tmp_path / "x").symlink_to(synthetic_data / TRAIN_IMAGES)
    (tmp_path / "labels").mkdir()
    path = tmp_path / "labels" / "l.csv"
    path.write_text("path,flag\n" + "".join(rows) + "../x/J1015.4+0523.fits.gz,1\n")
    table = read_label_file(path)
    assert table.ids == [p.stem for p in images] + ["J1015.4+0523"]
    found, _ = match_images(table, None)
    assert [f.name if f else None for f in found] == [p.name for p in images] + [None]


def test_the_task_travels_in_the_checkpoint_and_old_ones_are_the_tree() -> None:
    task = Task.from_dict({"targets": [{"name": "s", "kind": "binary", "columns": ["s"],
                                        "classes": ["0", "1"]}]})  # fmt: skip
    config = resolve_config("test_tiny", image_size=32, task=task)
    assert ModelConfig.from_dict(config.as_dict()) == config
    old = config.as_dict()
    del old["task"]  # a checkpoint from before tasks
    assert ModelConfig.from_dict(old).task == TREE and TREE.n_outputs == 37


def test_task_head_outputs_probabilities() -> None:
    task = Task.from_dict({"targets": [
        {"name": "s", "kind": "binary", "columns": ["s"], "classes": ["0", "1"]},
        {"name": "k", "kind": "multiclass", "columns": ["k"], "classes": ["a", "b", "c"]},
        {"name": "f", "kind": "fractions", "columns": ["f", "g"]},
    ]})  # fmt: skip
    config = resolve_config("test_tiny", image_size=32, task=task)
    model = create_model(config)
    model.head.init_to_mean(np.array([0.25, 0.2, 0.3, 0.5, 0.6, 0.1]))
    out = model.eval()(torch.rand(3, config.input.channels, 32, 32)).detach()
    assert out.shape == (3, 6)
    assert torch.allclose(out[:, 1:4].sum(dim=1), torch.ones(3))  # the classes sum to 1
    # Untrained: the training means, whatever the image.
    assert torch.allclose(out[0], torch.tensor([0.25, 0.2, 0.3, 0.5, 0.6, 0.1]), atol=1e-5)


def test_roc_auc_matches_counting_pairs() -> None:
    rng = np.random.default_rng(0)
    score, truth = rng.integers(0, 5, 40).astype(float), rng.integers(0, 2, 40)
    pos, neg = score[truth == 1], score[truth == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(score, truth) == pytest.approx(pairs)
    assert np.isnan(roc_auc(score, np.ones(40)))


def test_the_split_is_stratified(labels: Path) -> None:
    table = read_label_file(labels, ["spiral"])
    task = infer_task(table)
    y = encode(table, task)
    val = stratified_split(task, y, 0.25, 0, "here")
    for c in (0, 1):
        share = (y[val, 0] == c).sum() / (y[:, 0] == c).sum()
        assert share == pytest.approx(0.25, abs=0.05)


# ---------------------------------------------------------------------------------------------
# Bad labels: one clear line each
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,spiral\na,1\nb,1\nc,1\n", "one class only ('1' in all 3 labelled rows)"),
        ("id,size\na,1.5\nb,0.2\n", "real values outside [0, 1]"),
        ("id,kind\na,1\nb,disk\nc,2\n", "mixed types: numbers (e.g. '1') and text (e.g. 'disk')"),
        ("id,s\na,1\na,0\n", "id 'a' a second time"),
        ("name,s\na,1\n", "needs an id column"),
    ],
)
def test_bad_labels_say_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(BadInputError) as e:
        infer_task(read_label_file(path))
    assert message in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_too_few_labels_per_class_to_split(tmp_path: Path, synthetic_data: Path) -> None:
    rows = _truth()
    rows[0]["spiral"], others = 1, [r for r in rows[1:] if r["spiral"] == 0][:9]
    path = _write(tmp_path / "l.csv", [rows[0], *others], ["id", "spiral"])
    r = runner.invoke(
        app,
        [
            "finetune",
            "test_tiny",
            "--labels",
            str(path),
            "--images",
            str(synthetic_data / TRAIN_IMAGES),
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 2
    assert "class '1' has 1 label; splitting needs at least 2 per class" in r.output
    assert "--val-fraction 0" in r.output


def test_ids_without_an_image_are_named_counted_and_strict_stops(
    tmp_path: Path, synthetic_data: Path
) -> None:
    rows = _truth()[:40] + [{"id": "ghost1", "spiral": 1}, {"id": "ghost2", "spiral": 0}]
    path = _write(tmp_path / "l.csv", rows, ["id", "spiral"])
    args = ["finetune", "test_tiny", "--labels", str(path), "--images",
            str(synthetic_data / TRAIN_IMAGES), "--runs-dir", str(tmp_path / "runs"),
            "--epochs", "2", "--head-epochs", "0", "--epoch-images", "32", "--image-size", "32",
            "--device", "cpu"]  # fmt: skip
    r = runner.invoke(app, [*args, "--strict"])
    assert r.exit_code == 2 and "2 with a missing image (ghost1, ghost2)" in r.output
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["skipped"] == {"missing image": ["ghost1", "ghost2"]}
    assert result["n_train"] + result["n_val"] == 40


# ---------------------------------------------------------------------------------------------
# Finetuning, and every command on the result
# ---------------------------------------------------------------------------------------------


def test_finetune_from_a_run_keeps_its_features_and_input(base_run: Path, tuned: Path) -> None:
    base, ckpt = (
        load_checkpoint(base_run / "weights" / "best.pt"),
        load_checkpoint(tuned / "weights" / "best.pt"),
    )
    assert ckpt.model.input == base.model.input and ckpt.model.name == base.model.name
    assert ckpt.model.task.kind == "binary" and ckpt.labels is not None
    assert ckpt.val_ids.dtype.kind == "U" and len(ckpt.val_ids) > 0
    config = json.loads((tuned / "config.json").read_text())
    assert config["command"] == "finetune" and config["source"]["run"] == str(base_run.resolve())
    assert "val_roc_auc" in (tuned / "metrics.csv").read_text().splitlines()[0]


def test_summary_json_names_the_epoch_best_pt_holds_by_the_tasks_metric(tuned: Path) -> None:
    summary = json.loads((tuned / "summary.json").read_text())
    best = load_checkpoint(tuned / "weights" / "best.pt")
    assert summary["best_by"] == "val_roc_auc"
    assert summary["best_epoch"] == best.progress.best_epoch == best.progress.epoch
    rows = list(csv.DictReader((tuned / "metrics.csv").open()))
    aucs = [float(r["val_roc_auc"]) for r in rows]
    assert summary["best"]["val_roc_auc"] == pytest.approx(max(aucs))
    assert aucs.index(max(aucs)) + 1 <= summary["best_epoch"]  # ties: the lower loss
    assert summary["epochs_run"] == len(rows) and summary["epochs_asked"] == 3
    assert json.loads((tuned / "config.json").read_text())["command"] == "finetune"


def test_monitor_loss_keeps_the_epoch_of_the_lowest_validation_loss(
    base_run: Path, labels: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    config = finetune_config(epochs=4, head_epochs=1, epoch_images=32, monitor="loss",
                             patience=0, device="cpu")  # fmt: skip
    result = finetune(str(base_run), labels=labels, columns=["spiral"], config=config,
                      images=synthetic_data / TRAIN_IMAGES, runs_dir=tmp_path)  # fmt: skip
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    losses = [float(r["val_loss"]) for r in rows]
    assert losses[result.best_epoch - 1] == pytest.approx(min(losses), abs=2e-6)
    assert result.best_val_loss == pytest.approx(min(losses), abs=2e-6)
    assert result.best_val_rmse == pytest.approx(float(rows[result.best_epoch - 1]["val_roc_auc"]))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["best_by"] == "val_loss" and summary["best_epoch"] == result.best_epoch


def test_resume_refuses_a_finetuned_run(tuned: Path) -> None:
    r = runner.invoke(app, ["train", "--resume", str(tuned), "--epochs", "9"])
    assert r.exit_code == 2 and "a finetuned run" in r.output


def test_evaluate_reports_the_tasks_metrics(tuned: Path) -> None:
    r = runner.invoke(app, ["evaluate", str(tuned), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    spiral = result["targets"]["spiral"]
    assert result["metric"] == "roc_auc" and result["value"] == spiral["roc_auc"]
    assert 0 <= spiral["roc_auc"] <= 1 and 0 <= spiral["accuracy"] <= 1
    assert np.array(spiral["confusion"]).sum() == spiral["n_galaxies"] == result["n_images"]
    assert "rmse" not in result  # the Kaggle figures do not apply
    r = runner.invoke(app, ["evaluate", str(tuned), "--device", "cpu"])
    assert "spiral: ROC AUC" in r.output
    assert "confusion (rows: true, columns: predicted)" in r.output


def test_predict_writes_the_tasks_columns_and_embeddings(tuned: Path, synthetic_data: Path,
                                                         tmp_path: Path) -> None:  # fmt: skip
    out, emb = tmp_path / "p.csv", tmp_path / "e.npy"
    r = runner.invoke(
        app,
        [
            "predict",
            str(tuned),
            "--images",
            str(synthetic_data / TRAIN_IMAGES),
            "--out",
            str(out),
            "--embeddings",
            str(emb),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "spiral"] and len(rows) == N
    assert all(0 <= float(row["spiral"]) <= 1 for row in rows)
    assert np.load(emb).shape[0] == N
    # The Kaggle-only pieces say that they do not apply.
    r = runner.invoke(app, ["predict", str(tuned), "--device", "cpu"])
    assert r.exit_code == 2 and "A Kaggle submission (the 37 answers) does not apply" in r.output
    r = runner.invoke(app, ["predict", str(tuned), "--images", str(synthetic_data / TRAIN_IMAGES),
                            "--derived", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 2 and "--derived" in r.output


def test_export_plot_report_and_runs_handle_a_finetuned_run(tuned: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    r = runner.invoke(app, ["export", str(tuned), "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    spec = json.loads((tmp_path / "m.onnx.json").read_text())
    assert spec["output"]["columns"] == ["spiral"] and spec["output"]["shape"] == ["batch", 1]
    assert spec["output"]["task"]["kind"] == "binary"
    r = runner.invoke(app, ["plot", str(tuned), "--out", str(tmp_path / "plots"),
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "plots" / "loss.png").is_file()
    assert "they show the 37 Kaggle answers" in " ".join(r.output.split())
    r = runner.invoke(app, ["report", str(tuned), "--out", str(tmp_path / "r.html"),
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "spiral (binary: P(spiral = 1))" in (tmp_path / "r.html").read_text()
    r = runner.invoke(app, ["runs", str(tuned.parent)])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("spiral"))
    assert "binary" in line and "roc_auc" in line


def test_each_task_kind_learns_from_a_registry_model(labels: Path, synthetic_data: Path,
                                                      tmp_path: Path) -> None:  # fmt: skip
    """From scratch (galaxynet-s at 32 px) on all columns at once: a flag, four kinds and two
    fractions, each better than chance or the mean on the validation galaxies."""
    config = finetune_config(epochs=8, image_size=32, device="cpu", lr=3e-3, lr_decay=1.0,
                             val_fraction=0.3)  # fmt: skip
    result = finetune("galaxynet-s", labels=labels, images=synthetic_data / TRAIN_IMAGES,
                      config=config, runs_dir=tmp_path)  # fmt: skip
    assert result.metric == "loss" and result.n_train + result.n_val == N
    r = runner.invoke(app, ["evaluate", str(result.run_dir), "--json", "--device", "cpu"])
    scores = json.loads(r.stdout)["targets"]
    assert scores["spiral"]["roc_auc"] > 0.6
    kinds = scores["kind"]
    majority = max(np.array(kinds["confusion"]).sum(axis=1)) / kinds["n_galaxies"]
    assert kinds["accuracy"] >= majority
    assert scores["fractions"]["rmse"] < 0.3


def test_a_zoobot_encoder_loads_local_weights_through_timm(
    labels: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    """The registry entry builds its timm architecture and loads a local state dict of it (the
    same path as the hub's weights, offline); finetune then trains it on the flag."""
    import timm

    state = timm.create_model("convnext_pico", num_classes=0, in_chans=1).state_dict()
    weights = tmp_path / "pico.pth"
    torch.save(state, weights)
    config = finetune_config(weights=str(weights), image_size=32, epochs=2, head_epochs=1,
                             epoch_images=32, device="cpu")  # fmt: skip
    result = finetune(
        "zoobot-greyscale-convnext-pico",
        labels=labels,
        columns=["spiral"],
        images=synthetic_data / TRAIN_IMAGES,
        config=config,
        runs_dir=tmp_path,
    )
    ckpt = load_checkpoint(result.run_dir / "weights" / "last.pt")
    assert ckpt.model.input.channels == 1 and ckpt.model.input.mean == (0.0,)
    assert ckpt.model.input.crop == 368
    # The head-only epoch left the loaded features as they were; the file's tensors are in them.
    first = next(k for k in state if k.endswith("weight"))
    assert ckpt.state["model_state"][f"features.{first}"].shape == state[first].shape
    wrong = tmp_path / "wrong.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), wrong)
    with pytest.raises(BadInputError, match="cannot load into convnext_pico"):
        finetune("zoobot-greyscale-convnext-pico", labels=labels, columns=["spiral"],
                 images=synthetic_data / TRAIN_IMAGES, runs_dir=tmp_path,
                 config=config.replace(weights=str(wrong)))  # fmt: skip
