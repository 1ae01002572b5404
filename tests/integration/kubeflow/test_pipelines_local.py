"""Both pipelines end to end with kfp.local (`kfts pipeline run`), tiny models and epochs.

Every step is a subprocess that imports kfts and torch, so a run takes a minute or more on 2 cores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from kfts.jobs.load import load_model

from helpers import make_classification, run_cli, write_csv


def _outputs(stdout: str) -> dict[str, Path]:
    """`task/output: path` lines printed by `kfts pipeline run`."""
    return {m.group(1): Path(m.group(2)) for m in re.finditer(r"^  (\S+): (\S+)$", stdout, re.M)}


def _one(outputs, suffix):
    [path] = [p for name, p in outputs.items() if re.fullmatch(suffix, name)]
    return path


def test_inception_time_pipeline(tmp_path):
    labels, values = make_classification(n_per_class=8, length=24)
    write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    write_csv(tmp_path / "test.csv", values)
    write_csv(tmp_path / "test_labels.csv", ([lab] for lab in labels))
    result = run_cli(
        "pipeline",
        "run",
        "inception-time",
        "--train",
        tmp_path / "train.csv",
        "--valid",
        tmp_path / "train.csv",
        "--test",
        tmp_path / "test.csv",
        "--test-labels",
        tmp_path / "test_labels.csv",
        "--filters",
        "4",
        "--depth",
        "3",
        "--models",
        "2",
        "--epochs",
        "2",
        "--output-dir",
        tmp_path / "out",
        check=True,
    )
    outputs = _outputs(result.stdout)
    model = load_model(_one(outputs, r"train/model"), device="cpu")
    assert model.params.models == 2 and list(model.classes) == ["a", "b", "c"]
    executor_output = json.loads((_one(outputs, r"train/metrics").parent / "executor_output.json").read_text())
    train_metrics = executor_output["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert {"train_loss", "train_accuracy", "valid_loss", "valid_accuracy"} <= set(train_metrics)
    # batch predictions: the layout of docs/FORMATS.md, and the bytes `kfts predict` writes
    predictions = _one(outputs, r"batch-predict/predictions")
    run_cli(
        "predict",
        "--model-dir",
        _one(outputs, r"train/model"),
        "--input",
        tmp_path / "test.csv",
        "--output",
        tmp_path / "cli.csv",
        check=True,
    )
    assert predictions.read_bytes() == (tmp_path / "cli.csv").read_bytes()
    assert len(predictions.read_text().splitlines()) == len(values)
    # evaluations of valid and of the labelled test file: metrics, confusion matrix, report
    evaluations = [p for name, p in outputs.items() if name.endswith("/evaluation")]
    assert len(evaluations) == 2
    for evaluation in evaluations:
        metrics = json.loads((evaluation / "metrics.json").read_text())
        assert 0 <= metrics["accuracy"] <= 1 and metrics["confusion_matrix"]["labels"] == ["a", "b", "c"]
        assert (evaluation.parent / "report").read_text().startswith("<!")


def test_a_bad_csv_stops_the_run_at_validate_csv(tmp_path):
    (tmp_path / "train.csv").write_text("a,1,2,3\nb,1,abc,3\n")
    result = run_cli(
        "pipeline", "run", "inception-time", "--train", tmp_path / "train.csv", "--output-dir", tmp_path / "out"
    )
    assert result.returncode == 2
    assert f"  error: {tmp_path / 'train.csv'}: row 2, column 3: 'abc' is not a number\n" in result.stdout
    assert re.search(r"^validate train +FAILURE", result.stdout, re.M)
    assert "error: pipeline inception-time failed at 'validate train'" in result.stderr
    assert not list((tmp_path / "out").rglob("train/model"))


def test_lstm_ad_pipeline(tmp_path):
    t = np.arange(300)
    series = np.stack([np.sin(t / 5), np.cos(t / 7)], 1) + 0.05 * np.random.default_rng(0).normal(size=(300, 2))
    write_csv(tmp_path / "train.csv", series[:200])
    write_csv(tmp_path / "test.csv", series[200:])
    result = run_cli(
        "pipeline",
        "run",
        "lstm-ad",
        "--train",
        tmp_path / "train.csv",
        "--test",
        tmp_path / "test.csv",
        "--hidden-size",
        "8",
        "--num-layers",
        "1",
        "--sequence-length",
        "10",
        "--epochs",
        "2",
        "--output-dir",
        tmp_path / "out",
        check=True,
    )
    outputs = _outputs(result.stdout)
    assert load_model(_one(outputs, r"train/model"), device="cpu").algorithm == "lstm-ad"
    rows = _one(outputs, r"batch-predict/predictions").read_text().splitlines()
    assert len(rows) == 100 and rows[:10] == [",,"] * 10 and len(rows[10].split(",")) == 3
