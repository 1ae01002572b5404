"""Training over several processes with torchrun, as `torchrun ... -m kfts train` and a TrainJob run it.

InceptionTime shares its members out over the processes; every member is seeded as it is in one process, so
the artifact is the same whatever the number of processes (compared bit for bit: each process then runs one
thread, as does the one-process run it is compared with, pinned to one core), and predicts what the stacked
one-process run of the same seed predicts. Processes talk over loopback
only (gloo on `lo`, the rendezvous on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from kfts.core import artifact
from kfts.core.csvio import read_labeled_series
from kfts.jobs.load import load_model

from helpers import assert_statistics_of, free_port, make_classification, write_csv

LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
TINY = ["--filters", "4", "--depth", "3", "--batch-size", "16", "--epochs", "3", "--seed", "3", "--device", "cpu"]


@pytest.fixture
def train_csv(tmp_path):
    labels, values = make_classification(n_per_class=20, length=24)
    return write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))


def torchrun(*args, env=None, cores: str | None = None, **kwargs) -> subprocess.Popen:
    """torchrun ARGS, in a session of its own (killed as a whole); `cores`: pinned to them (taskset)."""
    pin = ["taskset", "-c", cores] if cores else []
    return subprocess.Popen(
        [*pin, sys.executable, "-m", "torch.distributed.run", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **LOOPBACK, **(env or {})},
        start_new_session=True,
        **kwargs,
    )


def finished(process: subprocess.Popen, timeout=600) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out
    return out


def one_process(train_csv, model_dir, *flags) -> None:
    """The reference: one process on one core (so one thread, as each torchrun process here)."""
    result = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "kfts",
            "train",
            "inception-time",
            "--train",
            train_csv,
            "--model-dir",
            model_dir,
            *TINY,
            *map(str, flags),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr


def assert_same_weights(a, b) -> None:
    left, right = load_file(a / artifact.WEIGHTS), load_file(b / artifact.WEIGHTS)
    assert left.keys() == right.keys()
    different = [k for k in left if not torch.equal(left[k], right[k])]
    assert not different, f"weights differ in {different[:5]}"


def train_args(train_csv, model_dir, *flags):
    return ["-m", "kfts", "train", "inception-time", "--train", train_csv, "--model-dir", model_dir, *TINY, *flags]


def test_two_processes_share_the_members_out_and_write_the_one_process_artifact(train_csv, tmp_path):
    out = finished(
        torchrun("--standalone", "--nproc-per-node", 2, *train_args(train_csv, tmp_path / "two", "--models", 3))
    )
    assert "distributed: 2 processes" in out and "member 2 on rank 1" in out
    assert out.count("model written to") == 1  # rank 0 writes, and prints the metric lines
    one_process(train_csv, tmp_path / "one", "--models", 3, "--ensemble", "sequential")
    assert_same_weights(tmp_path / "two", tmp_path / "one")
    history = artifact.read_manifest(tmp_path / "two")["history"]
    assert sorted({h["member"] for h in history}) == [1, 2, 3]  # every member's epochs, wherever it trained
    # one seed, one model: the stacked layout trains the same members, up to its rounding
    one_process(train_csv, tmp_path / "stacked", "--models", 3, "--ensemble", "stacked")
    series = read_labeled_series(train_csv).values
    two, stacked = (load_model(tmp_path / d, device="cpu").predict_proba(series) for d in ("two", "stacked"))
    assert (two.argmax(1) == stacked.argmax(1)).all()
    assert abs(two - stacked).max() < 1e-4


def test_two_nodes_on_loopback_train_the_same_model(train_csv, tmp_path):
    port = free_port()
    nodes = [
        torchrun(
            "--nnodes",
            2,
            "--node-rank",
            rank,
            "--nproc-per-node",
            1,
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{port}",
            "--rdzv-id",
            "kfts-test",
            "--local-addr",
            "127.0.0.1",
            *train_args(train_csv, tmp_path / f"node-{rank}", "--models", 2),
            cores=str(rank),
        )
        for rank in (0, 1)
    ]  # a core each: one thread, as the reference
    outputs = [finished(node) for node in nodes]
    assert "distributed: 2 processes" in outputs[0]
    written = [rank for rank in (0, 1) if (tmp_path / f"node-{rank}" / artifact.MANIFEST).exists()]
    assert len(written) == 1  # only global rank 0 writes, on whichever node it landed
    one_process(train_csv, tmp_path / "one", "--models", 2, "--ensemble", "sequential")
    assert_same_weights(tmp_path / f"node-{written[0]}", tmp_path / "one")


def test_more_processes_than_members_train_a_member_data_parallel(train_csv, tmp_path):
    out = finished(
        torchrun("--standalone", "--nproc-per-node", 2, *train_args(train_csv, tmp_path / "model", "--models", 1))
    )
    assert "member 1 on ranks 0,1 (data-parallel)" in out
    history = artifact.read_manifest(tmp_path / "model")["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and 0 <= history[-1]["train_accuracy"] <= 1
    # each process measured half the series; combined, they hold the whole training set's statistics
    model = load_model(tmp_path / "model", device="cpu")
    assert_statistics_of(model.network, model._tensor(read_labeled_series(train_csv).values))


def test_a_killed_two_process_run_resumes_on_every_rank(train_csv, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    job = train_args(train_csv, tmp_path / "resumed", "--models", 2, "--epochs", 30, "--checkpoint-dir", checkpoints)
    run = torchrun("--standalone", "--nproc-per-node", 2, *job)
    deadline = time.monotonic() + 300
    # both ranks have checkpointed an epoch of their member: kill the whole job, torchrun and its workers
    while len(list(checkpoints.glob("members-*.pt"))) < 2:
        assert run.poll() is None and time.monotonic() < deadline, run.stdout.read() if run.poll() else "timeout"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (tmp_path / "resumed").exists()
    out = finished(torchrun("--standalone", "--nproc-per-node", 2, *job))
    assert "epoch=1 " not in out  # rank 0's member went on from its checkpoint
    uninterrupted = train_args(train_csv, tmp_path / "straight", "--models", 2, "--epochs", 30)
    finished(torchrun("--standalone", "--nproc-per-node", 2, *uninterrupted))
    assert_same_weights(tmp_path / "resumed", tmp_path / "straight")


def test_bad_input_under_torchrun_ends_the_job_with_the_one_line_error(tmp_path):
    (tmp_path / "bad.csv").write_text("a,1,2\nb,1,x\n")
    result = torchrun(
        "--standalone",
        "--nproc-per-node",
        2,
        "-m",
        "kfts",
        "train",
        "inception-time",
        "--train",
        tmp_path / "bad.csv",
        "--model-dir",
        tmp_path / "model",
    )
    out, _ = result.communicate(timeout=300)
    assert result.returncode != 0
    assert f"error: {tmp_path / 'bad.csv'}: row 2, column 3: 'x' is not a number" in out
    assert not (tmp_path / "model").exists()


def test_lstm_ad_on_two_processes_learns_as_one_process_does(tmp_path):
    """Data-parallel over the sequences: each process takes its share of every batch; one Gaussian is fitted
    (the same on every process) and rank 0 writes it. Dropout draws differ, so within noise, not equal."""
    from kfts.cli.sample_data import waves

    write_csv(tmp_path / "series.csv", waves(1200))
    job = [
        "-m",
        "kfts",
        "train",
        "lstm-ad",
        "--train",
        tmp_path / "series.csv",
        "--sequence-length",
        "20",
        "--hidden-size",
        "16",
        "--num-layers",
        "1",
        "--batch-size",
        "8",
        "--epochs",
        "4",
        "--seed",
        "1",
        "--device",
        "cpu",
    ]
    out = finished(torchrun("--standalone", "--nproc-per-node", 2, *job, "--model-dir", tmp_path / "two"))
    assert "2 processes share every batch" in out and out.count("model written to") == 1
    single = subprocess.run(
        [sys.executable, *map(str, job), "--model-dir", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr
    two, one = (artifact.read_manifest(tmp_path / d) for d in ("two", "one"))
    assert two["history"][-1]["train_loss"] < two["history"][0]["train_loss"]  # it learns
    assert abs(two["metrics"]["train_loss"] - one["metrics"]["train_loss"]) < 0.5 * one["metrics"]["train_loss"]
    assert len(two["gaussian"]["mean"]) == len(one["gaussian"]["mean"])
