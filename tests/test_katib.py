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


def test_an_objective_no_trial_prints_is_refused_with_those_it_prints():
    result = run_cli("pipeline", "tune", "inception-time", "--train", "s3://b/t.csv", "--valid", "s3://b/v.csv",
                     "--search", "lr=0.0001:0.01:log", "--objective", "valid_f1")
    assert result.returncode == 2
    assert result.stderr == ("error: --objective valid_f1: the trials print valid_accuracy, valid_loss, train_loss, "
                             "train_accuracy; choose one of them\n")


def test_a_model_root_without_a_scheme_is_refused():
    with pytest.raises(InputError, match="give a URI the trial pods write to"):
        render_experiment(algorithm="lstm-ad", train_uri="t", valid_uri="v", search=[("lr", "0.001,0.01")],
                          model_root="/models")


def test_each_trial_writes_its_model_under_the_model_root_where_fetch_model_finds_it(tmp_path):
    """The trial's command, run here as Katib would run it (its trial parameters filled in), with a file://
    model root; then the fetch-model step reads the best trial's model from there."""
    import os
    import subprocess
    import sys

    from conftest import make_classification, write_csv
    from kfp.dsl import Model

    from kfts.algorithms import load_model
    from kfts.components import fetch_model

    labels, values = make_classification(n_per_class=6, length=16)
    data = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    root = f"file://{tmp_path}/tuning"
    experiment = render_experiment(algorithm="inception-time", train_uri=str(data), valid_uri=str(data),
                                   search=[("lr", "0.001,0.01")], fixed={"filters": 4, "depth": 3, "models": 1,
                                                                         "epochs": 1}, model_root=root)
    template = experiment["spec"]["trialTemplate"]
    assert template["trialParameters"][-1] == {"name": "trialName", "reference": "${trialSpec.Name}",
                                               "description": "the trial's name: its model's folder"}
    command = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    command = command.replace("${trialParameters.lr}", "0.01").replace("${trialParameters.trialName}", "trial-7")
    for name in ("train.csv", "valid.csv", "model"):  # the trial pod's /tmp
        command = command.replace(f" /tmp/{name}", f" {tmp_path}/pod/{name}")
    (tmp_path / "pod").mkdir()
    bin_dir = os.path.dirname(sys.executable)
    subprocess.run(["sh", "-c", command], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert load_model(tmp_path / "tuning" / "trial-7", device="cpu").params.lr == 0.01
    # what `kfts pipeline run --init-model ROOT/trial-7` hands the fetch-model step
    model = Model(uri=str(tmp_path / "fetched"))
    fetch_model.python_func(uri=f"{root}/trial-7", model=model)
    assert model.metadata["algorithm"] == "inception-time"
    assert load_model(tmp_path / "fetched", device="cpu").params.lr == 0.01
