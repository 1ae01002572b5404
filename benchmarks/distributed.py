"""Distributed training: `kfts train` in one process and under torchrun, on this machine's cores.

InceptionTime on seed-samples/inception_time (default architecture; 4 members and 10 epochs, 2 and 3 in quick mode):
one process with all cores; torchrun with 2 processes (members shared out, one thread each); two "nodes" on
loopback (two torchrun launchers, one process each, pinned to a core each, c10d rendezvous on 127.0.0.1).
Identity is checked bit for bit against one process pinned to one core (one thread, as each distributed
process runs; with all cores, floating-point sums run in another order, so its weights differ in the last
bits). LSTM-AD on the first 4000 steps of seed-samples/lstm_ad (2 layers of 32, batches of 8 sequences, 5 epochs; 2 in
quick mode):
one process against 2 processes data-parallel, by final training loss. Wall time includes start-up (torch
import and the process group) of every process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "data" / "seed-samples"
WORK = ROOT / "benchmarks" / "work" / "distributed"
ENV = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}


def section(quick: bool) -> str:
    from safetensors.torch import load_file

    WORK.mkdir(parents=True, exist_ok=True)
    members, epochs = (2, 3) if quick else (4, 10)
    train = [
        "-m",
        "kfts",
        "train",
        "inception-time",
        "--train",
        str(SEED / "inception_time" / "train.csv"),
        "--models",
        str(members),
        "--epochs",
        str(epochs),
        "--seed",
        "0",
        "--device",
        "cpu",
    ]
    runs = {
        "one process, all cores (sequential)": [sys.executable, *train, "--ensemble", "sequential"],
        "one process, one core (the reference)": [
            "taskset",
            "-c",
            "0",
            sys.executable,
            *train,
            "--ensemble",
            "sequential",
        ],
        "torchrun, 2 processes": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            *train,
        ],
    }
    lines = [
        "## Distributed training",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        "| InceptionTime run | wall s | artifact identical to the reference |",
        "|---|---|---|",
    ]
    seconds = {}
    for name, command in runs.items():
        seconds[name] = _timed(command + ["--model-dir", str(WORK / _slug(name))])
    seconds["two nodes on loopback"] = _two_nodes(train, WORK / _slug("two nodes on loopback"))
    reference = load_file(WORK / _slug("one process, one core (the reference)") / "weights.safetensors")
    for name, wall in seconds.items():
        weights = load_file(WORK / _slug(name) / "weights.safetensors")
        same = weights.keys() == reference.keys() and all((weights[k] == reference[k]).all() for k in weights)
        lines.append(f"| {name} | {wall:.1f} | {'yes' if same else 'no'} |")

    series = WORK / "lstm-train.csv"
    rows = (SEED / "lstm_ad" / "train.csv").read_text().splitlines()[:4000]
    series.write_text("\n".join(rows) + "\n")
    lstm = [
        "-m",
        "kfts",
        "train",
        "lstm-ad",
        "--train",
        str(series),
        "--hidden-size",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        "2" if quick else "5",
        "--seed",
        "0",
        "--device",
        "cpu",
    ]
    lines += ["", "| LSTM-AD run | wall s | final train_loss |", "|---|---|---|"]
    for name, command in (
        ("one process", [sys.executable, *lstm]),
        (
            "torchrun, 2 processes",
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *lstm],
        ),
    ):
        model = WORK / ("lstm-" + _slug(name))
        wall = _timed(command + ["--model-dir", str(model)])
        import json

        history = json.loads((model / "kfts-model.json").read_text())["history"]
        lines.append(f"| {name} | {wall:.1f} | {history[-1]['train_loss']:.6f} |")
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.perf_counter() - start


def _two_nodes(train: list[str], model_dir: Path) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    nodes = [
        subprocess.Popen(
            [
                "taskset",
                "-c",
                str(rank),
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "bench",
                "--local-addr",
                "127.0.0.1",
                *train,
                "--model-dir",
                str(model_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=3600)[0] for node in nodes]
    if any(node.returncode for node in nodes):
        raise RuntimeError("two-node run failed:\n" + "\n".join(o[-2000:] for o in outputs))
    return time.perf_counter() - start
