"""A third algorithm added from outside kfts, as docs/ALGORITHMS.md describes: one folder
(tests/toy_algorithm/mean_detector), installed beside kfts as a package whose entry point in the group
"kfts.algorithms" names its Algorithm, and run through `kfts validate/train/predict/evaluate`, `kfts serve`
(called with KServe's REST client and over V1) and the validate-csv component, with no file of kfts changed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kfts.core import artifact

from helpers import free_port, run_cli, wait_ready, write_csv

TOY = Path(__file__).resolve().parents[2] / "toy_algorithm" / "mean_detector"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The environment of a Python where the toy is installed: its package and its dist-info (with the entry
    point) on the path, as pip would lay them out."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(TOY, site / "mean_detector")
    dist = site / "toy_kfts-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-kfts\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[kfts.algorithms]\nmean-detector = mean_detector:MeanDetectorAlgorithm\n")
    return {**os.environ, "PYTHONPATH": str(site)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 3))
    test = rng.normal(size=(50, 3))
    test[20] = [0.0, 9.0, 0.0]  # one step far from the training mean
    return {
        "train": write_csv(folder / "train.csv", train.tolist()),
        "test": write_csv(folder / "test.csv", test.tolist()),
        "values": test,
        "scores": np.abs((test - train.mean(axis=0)) / train.std(axis=0)).max(axis=1),
    }


@pytest.fixture(scope="module")
def model(plugin, data, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model") / "model"
    result = run_cli(
        "train",
        "mean-detector",
        "--train",
        data["train"],
        "--model-dir",
        model_dir,
        "--sigmas",
        "4",
        env=plugin,
        check=True,
    )
    assert "train_loss=" in result.stdout and f"model written to {model_dir}" in result.stdout
    return model_dir


def test_the_cli_validates_trains_predicts_and_evaluates_the_plugin(plugin, data, model, tmp_path):
    assert "mean-detector" in run_cli("train", "--help", env=plugin, check=True).stdout
    ok = run_cli("validate", "mean-detector", data["train"], env=plugin, check=True)
    assert ok.stdout == f"ok: {data['train']}: 200 time steps of 3 series\n"
    assert json.loads((model / "kfts-model.json").read_text())["hyperparameters"] == {"sigmas": 4.0}

    run_cli(
        "predict",
        "--model-dir",
        model,
        "--input",
        data["test"],
        "--output",
        tmp_path / "p.csv",
        "--flag",
        env=plugin,
        check=True,
    )
    rows = [line.split(",") for line in (tmp_path / "p.csv").read_text().splitlines()]
    assert len(rows) == 50 and [i for i, (_, flag) in enumerate(rows) if flag == "1"] == [20]

    refused = run_cli(
        "predict",
        "--model-dir",
        model,
        "--input",
        data["test"],
        "--output",
        tmp_path / "q.csv",
        "--probabilities",
        env=plugin,
    )
    assert refused.returncode == 2 and "(its options: --flag)" in refused.stderr
    wrong = write_csv(tmp_path / "wrong.csv", [[1.0, 2.0]] * 5)
    refused = run_cli("predict", "--model-dir", model, "--input", wrong, "--output", tmp_path / "q.csv", env=plugin)
    assert refused.returncode == 2 and "has 2 columns, the model was trained on 3" in refused.stderr

    evaluated = run_cli(
        "evaluate",
        "--model-dir",
        model,
        "--input",
        data["test"],
        "--output-dir",
        tmp_path / "ev",
        env=plugin,
        check=True,
    )
    assert "flagged=1" in evaluated.stdout
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["flagged"] == 1
    assert "Mean detector evaluation: test.csv" in (tmp_path / "ev" / "report.html").read_text()


def test_the_plugin_gets_metric_lines_and_resuming_from_the_training_loop(plugin, data, tmp_path):
    """The toy trains through kfts.core.training_loop: it prints a metric line per epoch, and checkpoints. Run again on
    the same checkpoint directory, it takes the finished training from there instead of training again."""
    command = ["train", "mean-detector", "--train", data["train"], "--checkpoint-dir", tmp_path / "checkpoints"]
    first = run_cli(*command, "--model-dir", tmp_path / "first", env=plugin, check=True)
    assert re.findall(r"^epoch=(\d+) train_loss=\d+\.\d{6}$", first.stdout, re.MULTILINE) == ["1", "2"]
    again = run_cli(*command, "--model-dir", tmp_path / "again", env=plugin, check=True)
    assert "epoch=" not in again.stdout
    weights = [load_file(tmp_path / run / artifact.WEIGHTS) for run in ("first", "again")]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in ("mean", "std"))


def test_kfts_serve_answers_the_plugins_requests(plugin, data, model, tmp_path):
    from kserve import InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest

    port = free_port()
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kfts",
                "serve",
                "--model-dir",
                str(model),
                "--model-name",
                "toy",
                "--host",
                "127.0.0.1",
                "--http-port",
                str(port),
                "--grpc-port",
                str(free_port()),
                "--device",
                "cpu",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=plugin,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server, timeout=120)
        values = data["values"].astype(np.float32)
        tensor = InferInput("input-0", list(values.shape), "FP32")
        tensor.set_data_from_numpy(values, binary_data=False)

        async def infer():
            client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
            try:
                return await client.infer(url, InferRequest("toy", [tensor]), model_name="toy")
            finally:
                await client.close()

        [score] = asyncio.run(infer()).outputs
        assert score.name == "score"
        np.testing.assert_allclose(score.as_numpy(), data["scores"], rtol=1e-5)
        v1 = httpx.post(f"{url}/v1/models/toy:predict", json={"instances": values[:2].tolist()}, timeout=60)
        assert v1.status_code == 200
        np.testing.assert_allclose([p["score"] for p in v1.json()["predictions"]], score.as_numpy()[:2], rtol=1e-6)
        bad = httpx.post(f"{url}/v1/models/toy:predict", json={"instances": [[1.0, 2.0]]}, timeout=60)
        assert bad.status_code == 400 and "the model has 3" in bad.text
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_validate_csv_component_knows_the_plugin(plugin, data, tmp_path):
    script = (
        "import json, sys\n"
        "from kfp import local\n"
        "from kfts.kubeflow.components import validate_csv\n"
        "local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[1], raise_on_error=True)\n"
        "task = validate_csv(algorithm='mean-detector', uri=sys.argv[2], layout='training')\n"
        "print(json.dumps(task.outputs['data'].metadata))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "root"), str(data["train"])],
        capture_output=True,
        text=True,
        env=plugin,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads(result.stdout.strip().splitlines()[-1])
    assert (metadata["algorithm"], metadata["columns"], metadata["rows"]) == ("mean-detector", 3, 200)
