"""Messages that help: `kfts deploy render` refuses a model path without a scheme, and `kfts inspect` says
what a model artifact holds without importing torch."""

from __future__ import annotations

import subprocess
import sys

from helpers import make_classification, run_cli, write_csv


def test_deploy_render_refuses_a_model_uri_without_a_scheme():
    result = run_cli("deploy", "render", "--name", "m", "--model-uri", "/local/path/model")
    assert result.returncode == 2
    assert result.stderr == (
        "error: --model-uri /local/path/model has no scheme: give the URI KServe downloads "
        "the model from (s3://bucket/model, gs://..., pvc://CLAIM/path, https://...), not a "
        "path on this machine\n"
    )


def test_inspect_prints_what_the_artifact_holds_reading_json_only(tmp_path):
    labels, values = make_classification(n_per_class=6, length=16, classes=("up", "down"))
    train = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    run_cli(
        "train",
        "inception-time",
        "--train",
        train,
        "--valid",
        train,
        "--model-dir",
        tmp_path / "model",
        "--filters",
        "4",
        "--depth",
        "3",
        "--models",
        "2",
        "--ensemble",
        "sequential",
        "--epochs",
        "2",
        "--seed",
        "3",
        check=True,
    )
    probe = (
        "import sys\nfrom kfts.cli import main\ncode = main(sys.argv[1:])\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\nsys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, "inspect", str(tmp_path / "model")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stderr.splitlines()[-1] == "no torch", result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["algorithm"].strip() == "inception-time"
    assert "filters=4 depth=3 models=2" in lines["hyperparameters"]
    assert lines["input"].strip() == "series of 16 time steps, one per row"
    assert lines["classes"].strip() == "2: down, up"
    assert "train_accuracy=" in lines["metrics"] and "valid_loss=" in lines["metrics"]
    assert lines["history"].strip().startswith("2 epochs for each of 2 members; first: train_loss=")
    assert "kfts model format 1, written by kfts 0." in lines["format"] and "seed 3" in lines["format"]
    assert run_cli("inspect", tmp_path).stderr == f"error: {tmp_path}: no kfts-model.json: not a kfts model directory\n"
