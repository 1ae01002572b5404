"""docs/CLUSTER.md's `sh` blocks run here as written: every `kfts` line of them, in order, against a real S3-API
server on 127.0.0.1 holding the data they name, with the credentials only in the environment variables a
Kubernetes Secret gives a pod. (Its `console` blocks need a cluster and are not run.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
import yaml

from helpers import ROOT, make_classification, write_csv
from s3_server import S3Server

DOC = ROOT / "docs" / "CLUSTER.md"


def runnable_lines() -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    return [line for block in blocks for line in block.splitlines() if line.startswith("kfts ")]


def test_the_doc_names_what_runs_here():
    lines = runnable_lines()
    commands = {" ".join(shlex.split(line)[1:3]) for line in lines}
    assert {
        "validate inception-time",
        "train inception-time",
        "promote s3://kfts/runs/ecg-first",
        "pipeline compile",
        "pipeline tune",
        "deploy render",
    } <= commands, commands


@pytest.fixture
def s3():
    server = S3Server()
    yield server
    server.close()


def test_every_kfts_line_of_the_sh_blocks_runs(s3, tmp_path):
    labels, values = make_classification(seed=1)
    rows = [[label, *row] for label, row in zip(labels, values)]
    for split, part in (("train", rows[:45]), ("valid", rows[45:])):
        s3.put(f"data/ecg/{split}.csv", write_csv(tmp_path / f"{split}.csv", part).read_bytes())
    env = s3.env()
    for line in runnable_lines():
        result = subprocess.run(
            [sys.executable, "-m", "kfts", *shlex.split(line)[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    # what the lines wrote: a champion behind its pointer, and manifests for the cluster
    assert "models/ecg/kfts-champion.json" in s3.keys("models/ecg")
    for name in (
        "runtime-kfts.yaml",
        "runtime-kfts-cuda.yaml",
        "trainingruntime-kfts-torch.yaml",
        "isvc.yaml",
        "experiment.yaml",
        "retrain-inception-time.yaml",
    ):
        assert list(yaml.safe_load_all((tmp_path / name).read_text())), name
