"""kfts as users install it: the built wheel in a fresh virtual environment outside the checkout, every
command family run from a folder that is not the checkout.

The venv gets the wheel alone (`pip install --no-deps`); its dependencies come from the project's venv
through a .pth path entry, so the test takes seconds, not the minutes of downloading torch again (the images
install the same wheel with its dependencies resolved by pip: tests/integration/packaging/test_containers.py). A path entry adds
only the folder: the project's editable install (a meta-path finder started by its own .pth) stays inactive,
and `kfts` is imported from the wheel."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import ROOT, free_port, make_classification, wait_ready, write_csv

from kfts.cli import sample_data


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = (work / "dist").glob("kfts-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=300)
    python = work / "venv" / "bin" / "python"
    target = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    (target / "kfts-test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    return work / "venv"


def kfts(venv: Path, cwd: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    """The installed `kfts` script, from `cwd`, with nothing of the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KFTS_IMAGE")}
    return subprocess.run([venv / "bin" / "kfts", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{' '.join(map(str, result.args))}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


def test_the_wheel_holds_one_top_level_package_with_everything_that_runs(venv):
    [wheel] = (venv.parent / "dist").glob("kfts-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"kfts", "kfts-0.1.0.dist-info"}
    for needed in ("kfts/kubeflow/components/train.py", "kfts/kubeflow/pipelines/common.py",
                   "kfts/kubeflow/templates/katib-experiment.yaml"):
        assert needed in names
    assert any(name.startswith("kfts/algorithms/inception_time/_fused_kernels") for name in names)


def test_the_installed_wheel_loads_its_fused_kernels(venv, tmp_path):
    check = "from kfts.algorithms.inception_time import fused; print(fused.unavailable, fused.__file__)"
    unavailable, where = subprocess.run([venv / "bin" / "python", "-c", check], cwd=tmp_path, capture_output=True,
                                        text=True, check=True).stdout.split()
    assert unavailable == "None" and str(venv) in where


def test_every_command_family_runs_from_the_wheel(venv, tmp_path):
    python = venv / "bin" / "python"
    where = subprocess.run([python, "-c", "import kfts, kfts.kubeflow.components, kfts.kubeflow.pipelines; "
                                          "print(kfts.__file__, kfts.kubeflow.components.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and str(venv) in where

    assert ok(kfts(venv, tmp_path, "--version")) == "kfts 0.1.0\n"
    labels, values = make_classification(n_per_class=8, length=24)
    write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    write_csv(tmp_path / "test.csv", values)
    write_csv(tmp_path / "series.csv", sample_data.waves(160))
    assert ok(kfts(venv, tmp_path, "validate", "inception-time", "train.csv")) == \
        "ok: train.csv: 24 series of length 24, 3 classes\n"
    assert ok(kfts(venv, tmp_path, "validate", "lstm-ad", "series.csv")).startswith("ok: series.csv")

    ok(kfts(venv, tmp_path, "train", "inception-time", "--train", "train.csv", "--model-dir", "model",
            "--filters", "4", "--depth", "3", "--models", "1", "--epochs", "1", "--seed", "0"))
    ok(kfts(venv, tmp_path, "predict", "--model-dir", "model", "--input", "test.csv", "--output", "p.csv"))
    assert len((tmp_path / "p.csv").read_text().splitlines()) == len(values)
    ok(kfts(venv, tmp_path, "evaluate", "--model-dir", "model", "--input", "train.csv", "--output-dir", "eval"))
    assert (tmp_path / "eval" / "metrics.json").is_file()

    # the predictor, asked as a client would ask it
    port = free_port()
    server = subprocess.Popen([venv / "bin" / "kfts", "serve", "--model-dir", "model", "--host", "127.0.0.1",
                               "--http-port", str(port), "--grpc-port", str(free_port())], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/model:predict", method="POST",
                                         data=json.dumps({"instances": values[:3].tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["predictions"] == (tmp_path / "p.csv").read_text().splitlines()[:3]
    finally:
        server.terminate()
        server.wait(timeout=60)

    # pipeline compile writes where it is asked (the current folder by default), never into site-packages
    ok(kfts(venv, tmp_path, "pipeline", "compile", "lstm-ad"))
    spec = next(yaml.safe_load_all((tmp_path / "lstm-ad.yaml").read_text()))
    assert spec["pipelineInfo"]["name"] == "lstm-ad"
    tune = yaml.safe_load(ok(kfts(venv, tmp_path, "pipeline", "tune", "lstm-ad", "--train", "s3://b/t.csv",
                                  "--valid", "s3://b/v.csv", "--search", "lr=0.0001:0.01:log")))
    assert tune["kind"] == "Experiment"
    isvc = yaml.safe_load(ok(kfts(venv, tmp_path, "deploy", "render", "--model-uri", "s3://b/model",
                                  "--name", "demo")))
    assert isvc["kind"] == "InferenceService"

    # a whole pipeline with kfp.local: its steps run in this venv's Python, importing the wheel's kfts
    out = ok(kfts(venv, tmp_path, "pipeline", "run", "lstm-ad", "--train", "series.csv", "--test", "series.csv",
                  "--hidden-size", "4", "--num-layers", "1", "--sequence-length", "10", "--epochs", "1",
                  "--output-dir", "runs"))
    [predictions] = [line.split(": ")[1] for line in out.splitlines() if "batch-predict/predictions" in line]
    rows = Path(predictions).read_text().splitlines()
    assert len(rows) == 160 and not np.isnan(float(rows[-1].split(",")[0]))
