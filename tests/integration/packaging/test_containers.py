"""The images as a cluster runs them: the component image's CLI as a numeric non-root user on a read-only root
filesystem, and both pipelines and a retraining pipeline with every step in the image (kfp.local's
DockerRunner, `kfts pipeline run --containers`), giving what the subprocess runner gives.

The images come from `make images` (make test builds them first); see conftest's container fixtures."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np

from kfts.core.artifact import read_manifest
from kfts.kubeflow.local_run import container_runner, run_local

from helpers import make_classification, run_cli, write_csv

TINY_INCEPTION = ["--filters", "4", "--depth", "3", "--models", "2", "--epochs", "2"]
TINY_LSTM = ["--hidden-size", "8", "--num-layers", "1", "--sequence-length", "10", "--epochs", "2"]


def run_in_image(engine, image, *command, work: Path | None = None, timeout=600):
    """`command` in `image` as the image's own user (1000), read-only root, /tmp a tmpfs, no network;
    `work` (made writable for that user) mounted at /work."""
    mounts = []
    if work is not None:
        work.chmod(0o777)
        mounts = ["-v", f"{work}:/work"]
    return subprocess.run(
        [engine, "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", *mounts, image, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_image_runs_as_a_numeric_non_root_user_on_a_read_only_root(engine, component_image):
    result = run_in_image(engine, component_image, "sh", "-c", "id -u; id -g; kfts --version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1000", "1000", "kfts", "0.1.0"]


def test_the_cpu_image_runs_its_network_on_the_cpu_kernels_add_on(engine, component_image):
    """The add-on's compiled library loads in the image (its OpenMP runtime is the one torch brings), and
    kfts's network takes its layers."""
    check = "from kfts.algorithms.inception_time import network; print(type(network.LAYERS).__module__)"
    result = run_in_image(engine, component_image, "python", "-c", check)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kfts_cpu_kernels.inception_time\n"


def test_the_image_trains_and_predicts_as_the_wheel_does_here(engine, component_image, tmp_path):
    labels, values = make_classification(n_per_class=8, length=24)
    write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    write_csv(tmp_path / "test.csv", values)
    steps = [
        ["validate", "inception-time", "/work/train.csv"],
        [
            "train",
            "inception-time",
            "--train",
            "/work/train.csv",
            "--model-dir",
            "/work/model",
            "--seed",
            "0",
            "--ensemble",
            "sequential",
            "--precision",
            "fp32",
            *TINY_INCEPTION,
        ],
        [
            "predict",
            "--model-dir",
            "/work/model",
            "--input",
            "/work/test.csv",
            "--output",
            "/work/image.csv",
            "--probabilities",
        ],
    ]
    for step in steps:
        result = run_in_image(engine, component_image, "kfts", *step, work=tmp_path)
        assert result.returncode == 0, f"kfts {' '.join(step)}: {result.stderr}"
    here = [[arg.replace("/work", str(tmp_path)) for arg in step] for step in steps[1:]]
    here[0][here[0].index(str(tmp_path / "model"))] = str(tmp_path / "model-here")
    here[1][here[1].index(str(tmp_path / "model"))] = str(tmp_path / "model-here")
    here[1][here[1].index(str(tmp_path / "image.csv"))] = str(tmp_path / "here.csv")
    for step in here:
        run_cli(*step, check=True)
    # the same wheel, torch build and seed: the same model, so the same probabilities
    assert (tmp_path / "image.csv").read_text() == (tmp_path / "here.csv").read_text()


def test_bad_input_in_the_image_is_one_line_and_exit_code_2(engine, component_image, tmp_path):
    (tmp_path / "bad.csv").write_text("a,1,2\nb,1,x\n")
    result = run_in_image(engine, component_image, "kfts", "validate", "inception-time", "/work/bad.csv", work=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: /work/bad.csv: row 2, column 3: 'x' is not a number\n"


# -- pipelines with every step in the image ---------------------------------------------------------------------


def _outputs(stdout: str) -> dict[str, Path]:
    """`task/output: path` lines printed by `kfts pipeline run`."""
    return {m.group(1): Path(m.group(2)) for m in re.finditer(r"^  (\S+): (\S+)$", stdout, re.M)}


def _predictions(stdout: str) -> Path:
    [path] = [p for name, p in _outputs(stdout).items() if name.endswith("batch-predict/predictions")]
    return path


def _both_runners(tmp_path, image, *arguments) -> tuple[str, str]:
    """`kfts pipeline run ARGUMENTS` as subprocesses here and with --containers in `image`: (stdout, stdout)."""
    here = run_cli("pipeline", "run", *arguments, "--output-dir", tmp_path / "here", check=True)
    contained = run_cli("pipeline", "run", *arguments, "--containers", "--output-dir", tmp_path / "image", check=True)
    tasks = len({name.rsplit("/", 1)[0] for name in _outputs(contained.stdout)})  # those that wrote outputs
    assert len(re.findall(f"in container \\w+ of {re.escape(image)}\n", contained.stdout)) >= tasks > 3
    return here.stdout, contained.stdout


def test_the_inception_time_pipeline_in_containers_gives_the_subprocess_runners_outputs(
    component_image, docker_api, tmp_path
):
    labels, values = make_classification(n_per_class=8, length=24)
    write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    write_csv(tmp_path / "test.csv", values)
    write_csv(tmp_path / "test_labels.csv", ([lab] for lab in labels))
    here, image = _both_runners(
        tmp_path,
        component_image,
        "inception-time",
        "--train",
        tmp_path / "train.csv",
        "--valid",
        tmp_path / "train.csv",
        "--test",
        tmp_path / "test.csv",
        "--test-labels",
        tmp_path / "test_labels.csv",
        "--probabilities",
        "--ensemble",
        "sequential",
        "--precision",
        "fp32",
        *TINY_INCEPTION,
    )
    assert _predictions(image).read_text() == _predictions(here).read_text()
    evaluations = sorted(p for name, p in _outputs(image).items() if name.endswith("/evaluation"))
    assert len(evaluations) == 2  # valid, and the labelled test file
    for evaluation in evaluations:
        assert 0 <= json.loads((evaluation / "metrics.json").read_text())["accuracy"] <= 1


def test_the_lstm_ad_pipeline_in_containers_gives_the_subprocess_runners_outputs(component_image, docker_api, tmp_path):
    t = np.arange(300)
    series = np.stack([np.sin(t / 5), np.cos(t / 7)], 1) + 0.05 * np.random.default_rng(0).normal(size=(300, 2))
    write_csv(tmp_path / "train.csv", series[:200])
    write_csv(tmp_path / "test.csv", series[200:])
    here, image = _both_runners(
        tmp_path,
        component_image,
        "lstm-ad",
        "--train",
        tmp_path / "train.csv",
        "--test",
        tmp_path / "test.csv",
        "--precision",
        "fp32",
        *TINY_LSTM,
    )
    rows = [np.genfromtxt(_predictions(out), delimiter=",") for out in (here, image)]
    assert rows[0].shape == rows[1].shape == (100, 3)
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-5, atol=1e-5, equal_nan=True)


def test_a_retraining_pipeline_in_containers_promotes_a_better_challenger(component_image, docker_api, tmp_path):
    from kfts.algorithms.inception_time.estimator import InceptionTime, Params
    from kfts.core.csvio import LabeledSeries

    root = tmp_path / "root"  # the pipeline root: what the containers see, so the data and models live there
    (root / "data").mkdir(parents=True)
    labels, values = make_classification(n_per_class=10, length=24, seed=1)
    held_labels, held_values = make_classification(n_per_class=10, length=24, seed=2)
    write_csv(root / "data" / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    write_csv(root / "data" / "holdout.csv", ([lab, *row] for lab, row in zip(held_labels, held_values)))
    tiny = {"filters": 4, "depth": 3, "models": 1, "batch_size": 16}
    shuffled = np.random.default_rng(0).permutation(labels)  # a champion that learnt nothing
    InceptionTime(Params(**tiny, epochs=1), device="cpu", seed=0).fit(
        LabeledSeries(labels=shuffled, values=values)
    ).save(root / "data" / "champion")
    outputs = run_local(
        "retrain-inception-time",
        {
            "champion_uri": str(root / "data" / "champion"),
            "train_uri": str(root / "data" / "train.csv"),
            "holdout_uri": str(root / "data" / "holdout.csv"),
            "hyperparameters": {**tiny, "epochs": 30},
        },
        root,
        runner=container_runner(),
    )
    [challenger] = [paths["model"] for task, paths in outputs.items() if task.startswith("train")]
    assert read_manifest(root / "data" / "champion") == read_manifest(challenger)


def test_containers_without_an_engine_say_how_to_get_one(tmp_path, monkeypatch):
    write_csv(tmp_path / "train.csv", [["a", 1, 2], ["b", 2, 1]])
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = run_cli(
        "pipeline",
        "run",
        "inception-time",
        "--train",
        tmp_path / "train.csv",
        "--containers",
        "--output-dir",
        tmp_path / "out",
    )
    assert result.returncode == 2
    assert "error: --containers needs a Docker-compatible engine" in result.stderr
    assert not (tmp_path / "out").exists()
