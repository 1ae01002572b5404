"""Kill and resume: SIGKILL `kfts train` in the middle of an epoch, run the same command again.

The second run must start at the epoch after the last one the first run checkpointed, end with a valid
artifact, and give exactly the weights and history of a run that was never interrupted (same --seed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kfts.core import artifact
from kfts.jobs.load import load_model

from helpers import make_classification, run_cli, write_csv

EPOCH = re.compile(r"^(?:member=(\d+) )?epoch=(\d+) ", re.MULTILINE)


def inception_time_job(tmp_path):
    # tiny networks, but enough series that an epoch takes a good fraction of a second
    labels, values = make_classification(n_per_class=150, length=48, classes=("a", "b"), seed=1)
    train = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    # two members trained one after another: a resumed run must also initialise the second one identically
    flags = ["--models", 2, "--ensemble", "sequential", "--filters", 4, "--depth", 3, "--batch-size", 32, "--epochs", 5]
    return ["inception-time", "--train", train, *flags], values


def lstm_ad_job(tmp_path):
    rng = np.random.default_rng(1)
    t = np.arange(8000)
    values = np.stack([np.sin(t / 7), np.cos(t / 11)], axis=1) + 0.05 * rng.normal(size=(8000, 2))
    train = write_csv(tmp_path / "train.csv", values.astype(np.float32))
    flags = ["--sequence-length", 20, "--hidden-size", 16, "--num-layers", 1, "--batch-size", 4, "--epochs", 6]
    return ["lstm-ad", "--train", train, *flags], values.astype(np.float32)


JOBS = {"inception-time": inception_time_job, "lstm-ad": lstm_ad_job}


def checkpointed_epoch(directory) -> tuple[int, int] | None:
    """(member, epoch) of the training in progress that `directory` holds, or None while there is none.

    InceptionTime keeps one file per group of members trained together (members-A-B.pt, done or not),
    LSTM-AD one checkpoint."""
    for path in sorted(directory.glob("*.pt")) if directory.is_dir() else []:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not state.get("done"):
            member = int(path.stem.split("-")[1]) + 1 if path.stem.startswith("members-") else 0
            return member, state["epoch"]
    return None


def kill_mid_epoch(command, checkpoints: os.PathLike) -> str:
    """Start `kfts train ...`, wait for its first finished epoch (line on stdout and checkpoint on disk),
    let the next epoch get going, SIGKILL it. Returns what it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kfts", "train", *map(str, command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed, started = "", None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed += line
            if EPOCH.search(line):
                started = time.monotonic()
                break
        assert started, f"no epoch line before the run ended:\n{printed}"
        while checkpointed_epoch(checkpoints) is None:  # the line is printed just before the checkpoint
            time.sleep(0.02)
        time.sleep(0.1)  # into the next epoch
        assert process.poll() is None, f"the run finished before it could be killed:\n{printed}"
        process.send_signal(signal.SIGKILL)
        printed += process.stdout.read()
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return printed


def epochs_printed(text: str) -> list[tuple[int, int]]:
    return [(int(member or 0), int(epoch)) for member, epoch in EPOCH.findall(text)]


@pytest.mark.parametrize("algorithm", list(JOBS))
def test_killed_training_resumes_from_the_last_finished_epoch(tmp_path, algorithm):
    job, values = JOBS[algorithm](tmp_path)
    checkpoints, model_dir = tmp_path / "checkpoints", tmp_path / "model"
    command = [*job, "--seed", 7, "--device", "cpu", "--checkpoint-dir", checkpoints, "--model-dir", model_dir]

    first = kill_mid_epoch(command, checkpoints)
    assert not model_dir.exists(), "a killed run left a model directory"
    assert not any((p / artifact.MANIFEST).exists() for p in tmp_path.glob(".model*")), "a complete-looking copy"
    member, last = checkpointed_epoch(checkpoints)
    printed = epochs_printed(first)
    # the run may be killed between printing an epoch's line and saving its checkpoint: at most one ahead
    assert printed[-1][1] in (last, last + 1), first

    second = run_cli("train", *command, check=True)
    resumed = epochs_printed(second.stdout)
    assert resumed[0][1] == last + 1, second.stdout
    assert resumed[0][0] == printed[-1][0]  # the same ensemble member (0: not an ensemble of groups)
    assert (model_dir / artifact.MANIFEST).is_file()
    model = load_model(model_dir, device="cpu")
    predictions = model.predict(values) if algorithm == "inception-time" else model.score(values)[0]
    assert len(predictions) == len(values)

    # the same seed without interruption: identical weights and history
    straight_dir = tmp_path / "straight"
    run_cli("train", *job, "--seed", 7, "--device", "cpu", "--model-dir", straight_dir, check=True)
    resumed_weights, straight_weights = (
        load_file(model_dir / artifact.WEIGHTS),
        load_file(straight_dir / artifact.WEIGHTS),
    )
    assert resumed_weights.keys() == straight_weights.keys()
    different = [k for k in straight_weights if not torch.equal(resumed_weights[k], straight_weights[k])]
    assert not different, f"resumed weights differ from an uninterrupted run in {different[:5]}"
    assert artifact.read_manifest(model_dir)["history"] == artifact.read_manifest(straight_dir)["history"]


@pytest.mark.parametrize("algorithm", list(JOBS))
def test_a_killed_run_without_a_seed_resumes_when_started_again(tmp_path, algorithm):
    # the seed the first run drew is not the one the second draws: no --seed asks for none in particular
    job, _ = JOBS[algorithm](tmp_path)
    checkpoints, model_dir = tmp_path / "checkpoints", tmp_path / "model"
    command = [*job, "--device", "cpu", "--checkpoint-dir", checkpoints, "--model-dir", model_dir]
    kill_mid_epoch(command, checkpoints)
    member, last = checkpointed_epoch(checkpoints)
    second = run_cli("train", *command, check=True)
    assert epochs_printed(second.stdout)[0] == (member, last + 1), second.stdout
    assert (model_dir / artifact.MANIFEST).is_file()


def swapped_rows(path, first: int, second: int):
    """The CSV at `path` (no header) with two rows swapped: the same shape, classes and sum, other data."""
    lines = path.read_text().splitlines(keepends=True)
    lines[first], lines[second] = lines[second], lines[first]
    other = path.with_name(f"other-{path.name}")
    other.write_text("".join(lines))
    return other


@pytest.mark.parametrize("algorithm", list(JOBS))
def test_a_checkpoint_dir_refuses_a_run_on_other_data(tmp_path, algorithm):
    # a finished run's checkpoint is its result: taken for another run, it would be a model of other data
    job, values = JOBS[algorithm](tmp_path)
    job = [*job[: job.index("--epochs")], "--epochs", 1]
    checkpoints = tmp_path / "checkpoints"
    run_cli("train", *job, "--seed", 7, "--checkpoint-dir", checkpoints, "--model-dir", tmp_path / "a", check=True)
    train = job[job.index("--train") + 1]
    # InceptionTime: the first and the last series in the other order; LSTM-AD: the first two time steps
    first, second = (0, len(values) - 1) if algorithm == "inception-time" else (0, 1)
    other = [*job[: job.index("--train") + 1], swapped_rows(train, first, second), *job[job.index("--train") + 2 :]]
    refused = run_cli("train", *other, "--seed", 7, "--checkpoint-dir", checkpoints, "--model-dir", tmp_path / "b")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "belongs to a different training run" in refused.stderr
    assert not (tmp_path / "b").exists()


def test_a_checkpoint_dir_refuses_a_fine_tuning_of_another_model(tmp_path):
    job, _ = inception_time_job(tmp_path)
    job = [*job[: job.index("--epochs")], "--epochs", 1]
    for name, seed in (("m1", 1), ("m2", 2)):
        run_cli("train", *job, "--seed", seed, "--model-dir", tmp_path / name, check=True)
    checkpoints = tmp_path / "checkpoints"
    common = [*job, "--seed", 7, "--checkpoint-dir", checkpoints]
    run_cli("train", *common, "--init-model", tmp_path / "m1", "--model-dir", tmp_path / "a", check=True)
    refused = run_cli("train", *common, "--init-model", tmp_path / "m2", "--model-dir", tmp_path / "b")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "belongs to a different training run" in refused.stderr
