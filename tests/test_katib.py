"""`kfts pipeline tune`: a Katib Experiment whose trials run `kfts train` and read its metric lines."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import run_cli

from kfts.errors import InputError
from kfts.katib import render_experiment
from kfts.training import metric_line


def test_tune_renders_an_experiment_with_the_search_space(tmp_path):
    out = tmp_path / "experiment.yaml"
    run_cli("pipeline", "tune", "inception-time", "--train", "s3://b/train.csv", "--valid", "s3://b/valid.csv",
            "--search", "lr=0.0001:0.01:log", "--search", "filters=16,32", "--search", "depth=3:9",
            "--set", "epochs=50", "--max-trials", "8", "--parallel-trials", "2", "--output", out, check=True)
    experiment = yaml.safe_load(out.read_text())
    spec = experiment["spec"]
    assert experiment["kind"] == "Experiment" and experiment["metadata"]["name"] == "kfts-inception-time"
    assert spec["objective"]["type"] == "maximize" and spec["objective"]["objectiveMetricName"] == "valid_accuracy"
    assert spec["maxTrialCount"] == 8 and spec["parallelTrialCount"] == 2
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert spec["parameters"] == [
        {"name": "lr", "parameterType": "double",
         "feasibleSpace": {"min": "0.0001", "max": "0.01", "distribution": "logUniform"}},
        {"name": "filters", "parameterType": "discrete", "feasibleSpace": {"list": ["16", "32"]}},
        {"name": "depth", "parameterType": "int", "feasibleSpace": {"min": "3", "max": "9"}}]
    assert [p["name"] for p in spec["trialTemplate"]["trialParameters"]] == ["lr", "filters", "depth"]
    command = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "kfts train inception-time --train /tmp/train.csv --valid /tmp/valid.csv" in command
    for flag in ("--epochs 50", "--lr ${trialParameters.lr}", "--filters ${trialParameters.filters}",
                 "--depth ${trialParameters.depth}"):
        assert flag in command
    assert "s3://b/train.csv /tmp/train.csv s3://b/valid.csv /tmp/valid.csv" in command


def test_lstm_ad_minimises_valid_loss_and_gpu_trials_ask_for_a_gpu():
    experiment = render_experiment(algorithm="lstm-ad", train_uri="/d/train.csv", valid_uri="/d/valid.csv",
                                   search=[("hidden_size", "32,64,128")], image="reg/kfts:1", gpus=1)
    assert experiment["spec"]["objective"]["type"] == "minimize"
    assert experiment["spec"]["objective"]["objectiveMetricName"] == "valid_loss"
    pod = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "reg/kfts:1"
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize("gpus, image", [(0, "reg/kfts:2"), (1, "reg/kfts:2-cuda")])
def test_trials_run_the_component_image_and_its_cuda_build_on_gpus(gpus, image, monkeypatch):
    monkeypatch.setenv("KFTS_IMAGE", "reg/kfts:2")
    experiment = render_experiment(algorithm="lstm-ad", train_uri="/d/train.csv", valid_uri="/d/valid.csv",
                                   search=[("hidden_size", "32,64")], gpus=gpus)
    pod = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == image


def test_the_objective_is_read_from_the_train_step_s_metric_lines():
    # Katib's default StdOut filter, applied to what kfts train prints
    katib_filter = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
    line = metric_line({"epoch": 3, "train_loss": 0.4123, "valid_loss": 0.00001, "valid_accuracy": 0.84})
    found = {m.group(1): float(m.group(2)) for m in katib_filter.finditer(line)}
    assert found["valid_accuracy"] == pytest.approx(0.84) and found["valid_loss"] == pytest.approx(0.00001)


@pytest.mark.parametrize("search, message", [
    (("lr", "0.1:0.01"), "MIN must be below MAX"), (("depth", "2:8:log"), "log scale"),
    (("nope", "1:2"), "unknown inception-time hyperparameter"), (("filters", "a,b"), "invalid literal")])
def test_bad_search_specs_are_input_errors(search, message):
    with pytest.raises(InputError, match=message):
        render_experiment(algorithm="inception-time", train_uri="t", valid_uri="v", search=[search], image="i")
