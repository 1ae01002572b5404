"""kfts as users install it: the built wheels in fresh virtual environments outside the checkout, every
command family run from a folder that is not the checkout.

Two environments. `venv` gets the kfts wheel and the CPU kernels add-on's wheel alone (`pip install
--no-deps`); their dependencies come from the project's venv through a .pth path entry, so the test takes
seconds, not the minutes of downloading torch again (the images install the same wheels with their
dependencies resolved by pip: tests/integration/packaging/test_containers.py). A path entry adds only the folder: the
project's editable installs (started by their own .pth files) stay inactive, and `kfts` is imported from the wheel.
`core_venv` is `pip install kfts` as a user runs it: the wheel with its dependencies resolved by pip (at the
releases of constraints.txt, torch's CPU wheel from $PIP_FIND_LINKS) and no extra."""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from kfts.cli import sample_data

from helpers import ROOT, free_port, make_classification, wait_ready, write_csv


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The folder of the two wheels `make wheel` builds: kfts's and the add-on's."""
    dist = tmp_path_factory.mktemp("wheel") / "dist"
    subprocess.run(["make", "-s", "wheel", f"DIST={dist}"], cwd=ROOT, check=True, capture_output=True, timeout=600)
    return dist


def new_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def venv(dist) -> Path:
    python = new_venv(dist.parent / "venv")
    target = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (target / "kfts-test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", *dist.glob("*.whl")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return dist.parent / "venv"


@pytest.fixture(scope="module")
def core_venv(dist) -> Path:
    python = new_venv(dist.parent / "core-venv")
    [wheel] = dist.glob("kfts-*.whl")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"), str(wheel)],
        check=True,
        capture_output=True,
        timeout=1200,
    )
    return dist.parent / "core-venv"


def kfts(venv: Path, cwd: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    """The installed `kfts` script, from `cwd`, with nothing of the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KFTS_IMAGE")}
    return subprocess.run(
        [venv / "bin" / "kfts", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{' '.join(map(str, result.args))}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


def train_predict_evaluate(venv: Path, folder: Path) -> np.ndarray:
    """validate, train, predict and evaluate an InceptionTime model in `folder` (model/, p.csv, eval/);
    returns the series predicted."""
    labels, values = make_classification(n_per_class=8, length=24)
    write_csv(folder / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    write_csv(folder / "test.csv", values)
    assert (
        ok(kfts(venv, folder, "validate", "inception-time", "train.csv"))
        == "ok: train.csv: 24 series of length 24, 3 classes\n"
    )
    ok(
        kfts(
            venv,
            folder,
            "train",
            "inception-time",
            "--train",
            "train.csv",
            "--model-dir",
            "model",
            "--filters",
            "4",
            "--depth",
            "3",
            "--models",
            "1",
            "--epochs",
            "1",
            "--seed",
            "0",
        )
    )
    ok(kfts(venv, folder, "predict", "--model-dir", "model", "--input", "test.csv", "--output", "p.csv"))
    assert len((folder / "p.csv").read_text().splitlines()) == len(values)
    ok(kfts(venv, folder, "evaluate", "--model-dir", "model", "--input", "train.csv", "--output-dir", "eval"))
    assert (folder / "eval" / "metrics.json").is_file() and (folder / "eval" / "report.html").is_file()
    return values


def test_the_wheel_is_pure_python_with_one_top_level_package_holding_everything_that_runs(dist):
    [wheel] = dist.glob("kfts-*.whl")
    assert wheel.name == "kfts-0.1.0-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"kfts", "kfts-0.1.0.dist-info"}
    for needed in (
        "kfts/kubeflow/components/train.py",
        "kfts/kubeflow/pipelines/common.py",
        "kfts/kubeflow/templates/katib-experiment.yaml",
    ):
        assert needed in names
    assert not [name for name in names if name.endswith((".so", ".c"))]


def test_the_installed_add_on_takes_over_the_networks_layers(venv, dist, tmp_path):
    """The add-on's wheel: for every Python 3, manylinux as auditwheel tags it (what a package index takes);
    installed, kfts's network runs on it, and its kernels share torch's OpenMP runtime instead of loading
    their own (one thread pool)."""
    [addon] = dist.glob("kfts_cpu_kernels-*.whl")
    assert re.fullmatch(r"kfts_cpu_kernels-0\.1\.0-py3-none-(\w+\.)*manylinux_2_\d+_\w+\.whl", addon.name), addon.name
    check = (
        "from kfts.algorithms.inception_time import network; from kfts_cpu_kernels import ops; import torch; "
        "print(type(network.LAYERS).__module__, ops.__file__, torch.__file__, "
        "*sorted({line.split()[-1] for line in open('/proc/self/maps') if 'libgomp' in line}))"
    )
    layers, where, torch_init, *openmp = subprocess.run(
        [venv / "bin" / "python", "-c", check], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert layers == "kfts_cpu_kernels.inception_time" and str(venv) in where
    assert len(openmp) == 1 and Path(openmp[0]).is_relative_to(Path(torch_init).parent), openmp


def test_a_core_install_trains_and_predicts_without_kserve_kfp_or_docker(core_venv, tmp_path):
    """`pip install kfts`: none of the extras' packages, torch's layers in the network, and the commands that
    need an extra say which in one line."""
    python = core_venv / "bin" / "python"
    check = (
        "import importlib.util; from kfts.algorithms.inception_time import network; "
        "print(type(network.LAYERS).__name__, *(m for m in ('kserve', 'kfp', 'docker', 'kfts_cpu_kernels') "
        "if importlib.util.find_spec(m)))"
    )
    assert (
        subprocess.run([python, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        == "TorchLayers\n"
    )
    train_predict_evaluate(core_venv, tmp_path)
    for args, extra in ((["serve", "--model-dir", "model"], "serve"), (["pipeline", "compile", "lstm-ad"], "kubeflow")):
        result = kfts(core_venv, tmp_path, *args)
        assert result.returncode == 2, result.stderr
        assert re.fullmatch(
            f"error: kfts {args[0]} needs the {extra} extra \\(\\w+ is not installed\\): "
            f"pip install 'kfts\\[{extra}\\]'\n",
            result.stderr,
        ), result.stderr


def test_every_command_family_runs_from_the_wheel(venv, tmp_path):
    python = venv / "bin" / "python"
    where = subprocess.run(
        [
            python,
            "-c",
            "import kfts, kfts.kubeflow.components, kfts.kubeflow.pipelines; "
            "print(kfts.__file__, kfts.kubeflow.components.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where and str(venv) in where

    assert ok(kfts(venv, tmp_path, "--version")) == "kfts 0.1.0\n"
    values = train_predict_evaluate(venv, tmp_path)
    write_csv(tmp_path / "series.csv", sample_data.waves(160))
    assert ok(kfts(venv, tmp_path, "validate", "lstm-ad", "series.csv")).startswith("ok: series.csv")

    # the predictor, asked as a client would ask it
    port = free_port()
    server = subprocess.Popen(
        [
            venv / "bin" / "kfts",
            "serve",
            "--model-dir",
            "model",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/model:predict",
            method="POST",
            data=json.dumps({"instances": values[:3].tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
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
    tune = yaml.safe_load(
        ok(
            kfts(
                venv,
                tmp_path,
                "pipeline",
                "tune",
                "lstm-ad",
                "--train",
                "s3://b/t.csv",
                "--valid",
                "s3://b/v.csv",
                "--search",
                "lr=0.0001:0.01:log",
            )
        )
    )
    assert tune["kind"] == "Experiment"
    isvc = yaml.safe_load(ok(kfts(venv, tmp_path, "deploy", "render", "--model-uri", "s3://b/model", "--name", "demo")))
    assert isvc["kind"] == "InferenceService"

    # a whole pipeline with kfp.local: its steps run in this venv's Python, importing the wheel's kfts
    out = ok(
        kfts(
            venv,
            tmp_path,
            "pipeline",
            "run",
            "lstm-ad",
            "--train",
            "series.csv",
            "--test",
            "series.csv",
            "--hidden-size",
            "4",
            "--num-layers",
            "1",
            "--sequence-length",
            "10",
            "--epochs",
            "1",
            "--output-dir",
            "runs",
        )
    )
    [predictions] = [line.split(": ")[1] for line in out.splitlines() if "batch-predict/predictions" in line]
    rows = Path(predictions).read_text().splitlines()
    assert len(rows) == 160 and not np.isnan(float(rows[-1].split(",")[0]))
