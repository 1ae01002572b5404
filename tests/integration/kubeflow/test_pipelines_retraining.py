"""Champion/challenger retraining with kfp.local: a worse challenger keeps the champion, a better one is
promoted, and both scores are recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from kfts.algorithms.inception_time.estimator import InceptionTime, Params
from kfts.core.artifact import read_manifest
from kfts.core.csvio import LabeledSeries
from kfts.kubeflow.local_run import run_local

from helpers import make_classification, run_cli, write_csv

TINY = {"filters": 4, "depth": 3, "models": 1, "batch_size": 16}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real labels, shuffled labels (nothing to learn), held-out data; a good and a bad model."""
    d = tmp_path_factory.mktemp("data")
    labels, values = make_classification(n_per_class=10, length=24, seed=1)
    shuffled = np.random.default_rng(0).permutation(labels)
    held_labels, held_values = make_classification(n_per_class=10, length=24, seed=2)
    write_csv(d / "good.csv", ([lab, *row] for lab, row in zip(labels, values)))
    write_csv(d / "noise.csv", ([lab, *row] for lab, row in zip(shuffled, values)))
    write_csv(d / "holdout.csv", ([lab, *row] for lab, row in zip(held_labels, held_values)))
    for name, y, epochs in (("good-model", labels, 30), ("bad-model", shuffled, 1)):
        InceptionTime(Params(**TINY, epochs=epochs), device="cpu", seed=0).fit(
            LabeledSeries(labels=y, values=values)
        ).save(d / name)
    return d


def _retrain(files, tmp_path, champion_source, new_data, epochs):
    import shutil

    champion = tmp_path / "champion"
    shutil.copytree(files / champion_source, champion)
    outputs = run_local(
        "retrain-inception-time",
        {
            "champion_uri": str(champion),
            "train_uri": str(files / new_data),
            "holdout_uri": str(files / "holdout.csv"),
            "hyperparameters": {**TINY, "epochs": epochs},
        },
        tmp_path / "out",
    )
    [choice] = [paths for task, paths in outputs.items() if task.startswith("choose-champion")]
    scores = json.loads((Path(choice["scores"]).parent / "executor_output.json").read_text())
    [challenger] = [paths["model"] for task, paths in outputs.items() if task.startswith("train")]
    return champion, challenger, scores["artifacts"]["scores"]["artifacts"][0]["metadata"]


def test_a_worse_challenger_keeps_the_champion(files, tmp_path):
    champion, challenger, scores = _retrain(files, tmp_path, "good-model", "noise.csv", epochs=1)
    assert scores["challenger_accuracy"] < scores["champion_accuracy"] and scores["promoted"] == 0
    assert read_manifest(champion) == read_manifest(files / "good-model")


def test_a_better_challenger_is_promoted(files, tmp_path):
    champion, challenger, scores = _retrain(files, tmp_path, "bad-model", "good.csv", epochs=30)
    assert scores["challenger_accuracy"] > scores["champion_accuracy"] and scores["promoted"] == 1
    assert read_manifest(champion) == read_manifest(challenger)


def test_kfts_pipeline_run_runs_the_retraining_pipeline(files, tmp_path):
    import shutil

    champion = tmp_path / "champion"
    shutil.copytree(files / "good-model", champion)
    result = run_cli(
        "pipeline",
        "run",
        "retrain-inception-time",
        "--champion",
        champion,
        "--train",
        files / "noise.csv",
        "--holdout",
        files / "holdout.csv",
        "--filters",
        "4",
        "--depth",
        "3",
        "--models",
        "1",
        "--epochs",
        "1",
        "--output-dir",
        tmp_path / "out",
        check=True,
    )
    tasks = [line.split("  ")[0] for line in result.stdout.splitlines() if " SUCCESS " in line]
    # the four validations in any order (they are independent), then their cross-check, then training
    checked = tasks.index("check inputs together")
    assert {"validate train", "validate valid", "validate holdout", "validate holdout labels"} <= set(tasks[:checked])
    assert checked < tasks.index("train challenger")
    assert {"train challenger", "evaluate challenger", "evaluate champion", "choose champion"} <= set(tasks)
    assert "promote challenger" not in tasks  # a challenger trained one epoch on shuffled labels
    assert read_manifest(champion) == read_manifest(files / "good-model")


def test_the_retraining_pipeline_reads_and_promotes_on_an_object_store(files, tmp_path):
    """`kfts pipeline run` with every input and the champion in a real S3-API server (tests/s3_server.py), its
    identity only in the environment every step inherits, as a pod gets it from a Secret: validate-csv, fetch
    champion and promote read and write the bucket, and the champion an older kfts wrote (the model directly at
    the prefix) is replaced by a pointer to the challenger's version."""
    from s3_server import BUCKET, S3Server

    s3 = S3Server()
    try:
        for name in ("good.csv", "holdout.csv"):
            s3.put(f"data/{name}", (files / name).read_bytes())
        for name in ("kfts-model.json", "weights.safetensors"):
            s3.put(f"champion/{name}", (files / "bad-model" / name).read_bytes())
        champion = f"s3://{BUCKET}/champion"
        result = run_cli(
            "pipeline",
            "run",
            "retrain-inception-time",
            "--champion",
            champion,
            "--train",
            f"s3://{BUCKET}/data/good.csv",
            "--holdout",
            f"s3://{BUCKET}/data/holdout.csv",
            "--filters",
            "4",
            "--depth",
            "3",
            "--models",
            "1",
            "--epochs",
            "30",
            "--output-dir",
            tmp_path / "out",
            env=s3.env(),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"^promote challenger +SUCCESS", result.stdout, re.M), result.stdout
        [version] = {key.split("/")[2] for key in s3.keys("champion/versions/")}
        assert s3.keys("champion/") == [
            "champion/kfts-champion.json",
            f"champion/versions/{version}/kfts-model.json",
            f"champion/versions/{version}/weights.safetensors",
        ]
        [challenger] = [Path(m.group(1)) for m in re.finditer(r"^  train\S*/model: (\S+)$", result.stdout, re.M)]
        run_cli("copy", champion, tmp_path / "promoted", env=s3.env(), check=True)
        assert read_manifest(tmp_path / "promoted") == read_manifest(challenger)
    finally:
        s3.close()
