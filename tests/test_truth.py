"""Answers a researcher can trust: a run knows which questions it learned, science outputs leave
the others empty, derived flags never collide or lie, no answer silently loses to the mean, and
every JSON is strict."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.files import json_safe, to_json, write_json_atomic
from galaxyzoo_cli.core.metrics import question_scores
from galaxyzoo_cli.core.schema import COLUMNS, Learned, meaningful, question
from galaxyzoo_cli.core.settings import EvaluateSettings, PredictSettings, TrainConfig
from galaxyzoo_cli.data.catalogue import TEST_IMAGES, list_images
from galaxyzoo_cli.data.cutouts import derived_flags
from galaxyzoo_cli.inference import evaluate, predict
from galaxyzoo_cli.models.heads import TreeHead, tree_normalise
from galaxyzoo_cli.training.loop import train
from galaxyzoo_cli.training.run_folder import load_checkpoint

runner = CliRunner()
LEARNED = (1, 2, 6, 7, 8)
PARTIAL_UNLABELLED = (3, 4, 5, 9, 10, 11)  # as in the partial_data fixture (gz5000-like)
UNTRAINED_COLUMNS = [c for n in PARTIAL_UNLABELLED for c in question(n).columns]


def strict_loads(text: str) -> Any:
    """json.loads that refuses NaN and ±Infinity, as strict parsers do."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def partial_run(partial_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(model="test_tiny", epochs=1, batch_size=16, device="cpu")
    return train(config, data_dir=partial_data, runs_dir=tmp_path_factory.mktemp("runs")).run_dir


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# --- strict JSON -----------------------------------------------------------------------------


def test_json_has_null_where_a_figure_is_missing(tmp_path: Path) -> None:
    obj = {"a": float("nan"), "b": [float("inf"), np.float32(0.5), np.nan], "c": np.int64(3),
           "d": (1, -np.inf), "e": np.array([1.0, np.nan]), "f": tmp_path}  # fmt: skip
    expected = {"a": None, "b": [None, 0.5, None], "c": 3, "d": [1, None], "e": [1.0, None],
                "f": str(tmp_path)}  # fmt: skip
    assert strict_loads(to_json(obj)) == expected == json_safe(obj)
    write_json_atomic(tmp_path / "x.json", obj)
    assert strict_loads((tmp_path / "x.json").read_text()) == expected
    with pytest.raises(ValueError, match="not JSON: NaN"):
        strict_loads(json.dumps({"a": float("nan")}))  # the parser used here does refuse NaN


# --- which questions a run learned -----------------------------------------------------------


def test_learned_questions_from_labels() -> None:
    labels = np.full((3, 37), np.nan)
    labels[0, question(1).slice] = [0.5, 0.5, 0.0]
    labels[2, question(8).start] = 0.1  # one cell of a question is enough
    learned = Learned.from_labels(labels)
    assert learned.questions == (1, 8) and not learned.complete
    assert learned.mask.sum() == 3 + 7
    assert learned.untrained_columns[0] == "Class2.1" and len(learned.untrained_columns) == 27
    assert (learned & Learned((1, 2))).questions == (1,)
    assert Learned.from_value(None).complete and "Q2 (Class2.1-Class2.2)" in (
        learned.describe_untrained()
    )


def test_a_run_records_the_questions_it_learned(partial_run: Path) -> None:
    ckpt = load_checkpoint(partial_run / "weights" / "best.pt")
    assert ckpt.model.learned.questions == LEARNED
    assert ckpt.model.activation == "softplus"
    raw = torch.load(partial_run / "weights" / "last.pt", weights_only=True)
    assert raw["model"]["trained_questions"] == list(LEARNED)
    config = strict_loads((partial_run / "config.json").read_text())
    assert config["model"]["trained_questions"] == list(LEARNED)


def test_an_old_checkpoint_keeps_relu_all_questions_and_its_predictions(
    partial_run: Path, tmp_path: Path
) -> None:
    raw = torch.load(partial_run / "weights" / "best.pt", weights_only=True)
    for key in ("activation", "trained_questions"):  # as 0.1 and 0.2 wrote them
        del raw["model"][key]
    old = tmp_path / "weights" / "old.pt"
    old.parent.mkdir()
    torch.save(raw, old)
    ckpt = load_checkpoint(old)
    assert ckpt.model.activation == "relu" and ckpt.model.learned.complete
    model = ckpt.build_model()
    x = torch.rand(4, ckpt.model.input.channels, ckpt.model.input.size, ckpt.model.input.size)
    with torch.no_grad():
        by_hand = tree_normalise(torch.relu(model.head.linear(model.embed(x))))
        np.testing.assert_allclose(model(x).numpy(), by_hand.numpy(), atol=1e-7)
        assert not torch.allclose(model(x), load_checkpoint(
            partial_run / "weights" / "best.pt").build_model()(x))  # fmt: skip


# --- the tree head: a rare answer cannot die -------------------------------------------------


def test_softplus_head_starts_at_the_mean_and_a_rare_answer_keeps_a_gradient() -> None:
    means = np.array([0.6, 0.399, 0.001, *np.full(34, np.nan)])
    for activation in ("softplus", "relu"):
        head = TreeHead(5, activation)
        head.init_to_mean(means)
        out = head(torch.randn(3, 5)).detach().numpy()
        np.testing.assert_allclose(out[:, :3], np.tile(means[:3], (3, 1)), atol=2e-6)  # floor
    grads = {}
    for activation in ("softplus", "relu"):
        head = TreeHead(5, activation)
        with torch.no_grad():
            head.linear.bias[2] = -5.0  # Class1.3 pushed below zero: it predicts ~0
        out = head(torch.ones(8, 5))
        ((out[:, 2] - 0.05) ** 2).sum().backward()  # the galaxies are 5% star or artefact
        assert head.linear.bias.grad is not None
        grads[activation] = float(head.linear.bias.grad[2])
    assert grads["relu"] == 0.0  # dead for good: the collapse seen on real data
    assert grads["softplus"] < 0  # pulled back up


# --- accuracy where a question means something -----------------------------------------------


def test_accuracy_counts_galaxies_most_volunteers_sent_to_the_question() -> None:
    target = np.full((3, 37), np.nan)
    pred = np.zeros((3, 37))
    q6, q8 = question(6), question(8)
    target[:, q6.slice] = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]
    target[:, q8.slice] = 0.0
    target[:, q8.start] = target[:, q6.start]  # "ring" is the top odd feature
    pred[:, q8.start + 1] = 0.3  # the model says "lens" everywhere
    pred[0, q8.start] = 0.9  # but gets galaxy 0 right
    assert meaningful(target)[:, 7].tolist() == [True, False, True]
    score = question_scores(pred, target)[7]
    assert score.n_accuracy == 2 and score.accuracy == pytest.approx(0.5)


# --- predict: science outputs and Kaggle submissions ------------------------------------------


def test_science_output_leaves_untrained_columns_empty(
    partial_run: Path, partial_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.csv"
    images = str(partial_data / TEST_IMAGES)
    result = runner.invoke(
        app, ["predict", str(partial_run), "--images", images, "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = strict_loads(result.stdout)
    assert report["untrained_questions"] == list(PARTIAL_UNLABELLED)
    assert report["empty_columns"] == UNTRAINED_COLUMNS and not report["kaggle_submission"]
    assert "Left empty: Q3 (Class3.1-Class3.2)" in result.stderr
    assert result.stderr.count("Left empty") == 1
    rows = _rows(out)
    assert list(rows[0])[:2] == ["id", "Class1.1"]  # digit stems too: one id column name
    assert all(r[c] == "" for r in rows for c in UNTRAINED_COLUMNS)
    assert all(0 <= float(r[c]) <= 1 for r in rows for c in COLUMNS if c not in UNTRAINED_COLUMNS)
    prov = strict_loads(Path(str(out) + ".json").read_text())
    assert prov["untrained_questions"] == list(PARTIAL_UNLABELLED)
    assert prov["untrained_columns"] == "empty"


def test_kaggle_submission_keeps_the_prior_and_says_so(
    partial_run: Path, partial_data: Path, tmp_path: Path
) -> None:
    result = predict([partial_run], PredictSettings(data_dir=partial_data, out=tmp_path / "s.csv"))
    assert result.kaggle and "prior" in result.notes[0] and "Q11" in result.notes[0]
    rows = _rows(result.out)
    assert list(rows[0])[0] == "GalaxyID" and list(rows[0])[1:] == list(COLUMNS)
    values = np.array([[float(r[c]) for c in COLUMNS] for r in rows])
    assert np.isfinite(values).all() and values.shape == (24, 37)
    q2, q3 = question(2), question(3)
    np.testing.assert_allclose(values[:, q3.start], values[:, q2.start + 1] / 2, rtol=1e-4)
    assert "× 37 answers (" in result.summary()


def test_derived_flags_only_from_learned_questions(
    partial_run: Path, partial_data: Path, tmp_path: Path
) -> None:
    result = predict(
        [partial_run],
        PredictSettings(images=partial_data / TEST_IMAGES, derived=True, out=tmp_path / "d.csv"),
    )
    assert result.flags == ["derived_smooth", "derived_featured", "derived_edge_on"]
    note = result.notes[-1]
    assert "barred (needs Q3)" in note and "spiral (needs Q4)" in note
    assert list(_rows(result.out)[0])[-3:] == result.flags
    assert "× 40 columns (37 answers, 20 of them left empty, + 3 derived flags)" in (
        result.summary()
    )
    full = derived_flags(np.full((2, 37), 0.5))
    names = ("smooth", "featured", "edge_on", "barred", "spiral")
    assert list(full.columns) == [f"derived_{k}" for k in names]
    assert full.note() is None


def test_catalogue_columns_pass_through_unchanged(
    partial_run: Path, partial_data: Path, tmp_path: Path
) -> None:
    _, paths = list_images(partial_data / TEST_IMAGES)
    (tmp_path / "img").mkdir()
    for p in paths[:2]:
        (tmp_path / "img" / p.name).write_bytes(p.read_bytes())
    catalogue = tmp_path / "cat.csv"
    catalogue.write_text(
        f"ra,id,path,spiral\n1.5,{paths[1].stem},img/{paths[1].name},yes\n"
        f"2.5,{paths[0].stem},./img/{paths[0].name},no\n"
    )
    result = predict(
        [partial_run], PredictSettings(catalogue=catalogue, derived=True, out=tmp_path / "c.csv")
    )
    rows = _rows(result.out)
    assert list(rows[0]) == ["id", *COLUMNS, "ra", "path", "spiral", *result.flags]
    assert [(r["id"], r["ra"], r["path"], r["spiral"]) for r in rows] == [
        (paths[1].stem, "1.5", f"img/{paths[1].name}", "yes"),
        (paths[0].stem, "2.5", f"./img/{paths[0].name}", "no"),
    ]
    clash = tmp_path / "clash.csv"
    clash.write_text(f"id,path,derived_smooth\na,img/{paths[0].name},1\n")
    bad = runner.invoke(app, ["predict", str(partial_run), "--catalogue", str(clash)])
    assert bad.exit_code == 2 and "'derived_smooth' is a column predict writes" in bad.stderr


# --- evaluate: what was not learned is not scored; losses to the mean are flagged -------------


def test_evaluate_is_strict_json_and_flags_answers_worse_than_the_mean(
    partial_run: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["evaluate", str(partial_run), "--split", "all", "--json",
                                 "--predictions", str(tmp_path / "e.csv")])  # fmt: skip
    assert result.exit_code == 0, result.output
    ev = strict_loads(result.stdout)
    assert strict_loads((partial_run / "eval.json").read_text())["rmse"] == ev["rmse"]
    assert ev["untrained_questions"] == list(PARTIAL_UNLABELLED)
    assert ev["questions"]["Q3"]["rmse"] is None and ev["questions"]["Q1"]["rmse"] > 0
    answers = ev["answers"]
    assert list(answers) == list(COLUMNS) and answers["Class3.1"]["rmse"] is None
    for a in answers.values():
        if a["rmse"] is not None:
            assert a["worse_than_mean"] == (a["rmse"] > a["training_mean_rmse"])
    assert ev["worse_than_mean"] == [c for c, a in answers.items() if a["worse_than_mean"]]
    assert all(r[c] == "" for r in _rows(tmp_path / "e.csv") for c in UNTRAINED_COLUMNS)
    human = evaluate(partial_run, EvaluateSettings(split="all", write=False)).summary()
    assert "Not scored, never learned" in human and "Q3 (Class3.1-Class3.2)" in human
    assert "Class1.3" in human and "most volunteers reached the question" in human


def test_a_loss_to_the_mean_is_named(partial_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import galaxyzoo_cli.inference.evaluation as evaluation
    from galaxyzoo_cli.inference.loading import Predictions

    real = evaluation.predict_paths

    def worse(*args: Any, **kwargs: Any) -> Predictions:
        pred = real(*args, **kwargs)
        pred.values[:, 2] = 0.9  # everything a star
        return pred

    monkeypatch.setattr(evaluation, "predict_paths", worse)
    result = evaluate(partial_run, EvaluateSettings(split="all", write=False))
    assert "Class1.3" in result.worse_than_mean
    assert "Class1.3" in result.summary().splitlines()[-1]
    line = next(x for x in result.summary().splitlines() if x.startswith("Class1.3"))
    assert line.endswith("worse than the training mean")


def test_export_spec_names_the_untrained_questions(partial_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = runner.invoke(app, ["export", str(partial_run), "--format", "torchscript",
                                 "--out", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    strict_loads(result.stdout)
    spec = strict_loads(Path(str(out) + ".json").read_text())
    assert spec["output"]["trained_questions"] == list(LEARNED)
    assert spec["output"]["untrained_columns"] == UNTRAINED_COLUMNS
