"""Serving latency and throughput: the real `kfts serve` on 127.0.0.1, beside the model in-process.

Both models have the reference product's default architecture (InceptionTime: 5 networks, 32 filters, depth 6;
LSTM-AD: 2 layers of 128, sequence length 50), trained for one epoch on a slice of seed-samples/: serving
cost depends on the architecture, not on how well it was trained. Requests are V1 JSON: one InceptionTime
series per request, or one LSTM-AD series of 200 time steps per request, from the test files in seed-samples/.

For each concurrency (requests in flight at once) the table gives the latency percentiles and requests/s
seen by the client, and beside them the in-process throughput of the model on the same batches: InceptionTime
requests are batched by the server (at most `concurrency` series per model call), so in-process means
predict_proba on batches of `concurrency` series; an LSTM-AD request is one score() call whatever the
concurrency. Client and server share this machine's cores, so the client's own work is in the figures too.
The server runs on the GPU when there is one (`kfts serve --device cuda`), and so does the in-process model.

Before the load, every cell of the client matrix (tests/client_matrix.py: KServe's REST and gRPC clients in
each V2 encoding, curl for V1 JSON and CSV) is checked against `kfts predict` on a few of the same rows.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
WORK = Path(__file__).resolve().parent / "work" / "serving"
SEED = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed-samples"
CONCURRENCY = (1, 8, 32)
LSTM_STEPS = 200  # time steps per LSTM-AD request


def section(quick: bool) -> str:
    import torch

    sys.path.insert(0, str(TESTS))  # the client matrix lives with the tests that run it
    from kfts.jobs.load import load_model

    from client_matrix import MODES, Expected, Target, run_matrix

    device = "cuda" if torch.cuda.is_available() else "cpu"
    requests = {1: 40, 8: 160, 32: 320} if quick else {1: 200, 8: 1000, 32: 2000}
    WORK.mkdir(parents=True, exist_ok=True)
    lines = [
        f"## Serving (kfts serve --device {device}, KServe V1 REST on 127.0.0.1)",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        "| model | concurrency | requests | p50 ms | p99 ms | requests/s | in-process requests/s "
        "(same batches) | served / in-process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    matrix = [
        "",
        "Client matrix (`ok`, or what failed):",
        "",
        "| model | " + " | ".join(MODES) + " |",
        "|---|" + "---|" * len(MODES),
    ]
    for algorithm, (model_dir, instances) in {
        "inception-time": train_inception_time(),
        "lstm-ad": train_lstm_ad(),
    }.items():
        model = load_model(model_dir, device=device)
        server, port, grpc_port = start_server(model_dir, device)
        try:
            rows = (
                np.concatenate([np.asarray(b["instances"], dtype=np.float32) for b in instances[:8]])
                if algorithm == "inception-time"
                else np.asarray(instances[0]["instances"], dtype=np.float32)
            )
            cells = run_matrix(
                Target(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", "m"), Expected.of(model_dir, rows)
            )
            matrix.append(f"| {algorithm} | " + " | ".join(cells[m].replace("|", "/")[:120] for m in MODES) + " |")
            for c in CONCURRENCY:
                latencies, seconds = asyncio.run(load(port, instances, c, requests[c]))
                served = requests[c] / seconds
                own = in_process(model, instances, c)
                p50, p99 = np.percentile(latencies, [50, 99]) * 1000
                lines.append(
                    f"| {algorithm} | {c} | {requests[c]} | {p50:.1f} | {p99:.1f} | {served:.1f} | "
                    f"{own:.1f} | {served / own:.2f} |"
                )
        finally:
            server.terminate()
            server.wait(timeout=60)
    return "\n".join(lines + matrix) + "\n"


# -- models and request bodies -----------------------------------------------------------------------------


def train_inception_time() -> tuple[Path, list[dict]]:
    from kfts.algorithms.inception_time.estimator import InceptionTime, Params
    from kfts.core import csvio

    data = csvio.read_labeled_series(SEED / "inception_time" / "train.csv") if SEED.is_dir() else _toy_labeled()
    model = InceptionTime(Params(epochs=1, ensemble="stacked"), device="cpu", seed=0)
    model.fit(csvio.LabeledSeries(data.labels[:128], data.values[:128]))
    model.save(WORK / "inception-time")
    test = csvio.read_series_rows(SEED / "inception_time" / "test_data.csv") if SEED.is_dir() else data.values
    return WORK / "inception-time", [{"instances": [row.tolist()]} for row in test]


def train_lstm_ad() -> tuple[Path, list[dict]]:
    from kfts.algorithms.lstm_ad.estimator import LstmAD, Params
    from kfts.core import csvio

    if SEED.is_dir():
        train = csvio.read_series_columns(SEED / "lstm_ad" / "train.csv")[:2000]
        test = csvio.read_series_columns(SEED / "lstm_ad" / "test_data.csv")
    else:
        t = np.arange(4000, dtype=np.float32)
        train, test = (
            np.stack([np.sin(t / 9), np.cos(t / 13)], axis=1)[:2000],
            np.stack([np.sin(t / 9), np.cos(t / 13)], axis=1)[2000:],
        )
    model = LstmAD(Params(epochs=1), device="cpu", seed=0)
    model.fit(train)
    model.save(WORK / "lstm-ad")
    windows = [test[i : i + LSTM_STEPS] for i in range(0, len(test) - LSTM_STEPS + 1, LSTM_STEPS // 2)]
    return WORK / "lstm-ad", [{"instances": w.tolist()} for w in windows]


def _toy_labeled():
    from kfts.core.csvio import LabeledSeries

    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 100)
    labels = rng.choice(["a", "b", "c"], 256)
    values = np.array([np.sin(2 * np.pi * (ord(c) - 95) * 2 * t) + 0.1 * rng.normal(size=100) for c in labels])
    return LabeledSeries(labels, values.astype(np.float32))


# -- server and load ---------------------------------------------------------------------------------------


def start_server(model_dir: Path, device: str) -> tuple[subprocess.Popen, int, int]:
    import httpx

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    log = open(WORK / f"{model_dir.name}-server.log", "wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kfts",
            "serve",
            "--model-dir",
            str(model_dir),
            "--model-name",
            "m",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--device",
            device,
            "--max-batch-size",
            str(max(CONCURRENCY)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"kfts serve exited {server.returncode}: see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{ports[0]}/v2/models/m/ready").status_code == 200:
                return server, ports[0], ports[1]
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"kfts serve not ready in 600s: see {log.name}")


async def load(port: int, bodies: list[dict], concurrency: int, total: int) -> tuple[np.ndarray, float]:
    """`total` requests, `concurrency` in flight at a time -> (latencies in seconds, wall seconds)."""
    import httpx
    import orjson

    payloads = [orjson.dumps(b) for b in bodies]
    latencies = []
    counter = iter(range(total))
    url = f"http://127.0.0.1:{port}/v1/models/m:predict"
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await client.post(url, content=payloads[0], headers={"content-type": "application/json"})  # connect

        async def worker():
            for i in counter:
                start = time.perf_counter()
                answer = await client.post(
                    url, content=payloads[i % len(payloads)], headers={"content-type": "application/json"}
                )
                latencies.append(time.perf_counter() - start)
                answer.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return np.array(latencies), time.perf_counter() - start


def in_process(model, bodies: list[dict], concurrency: int) -> float:
    """Requests/s of the model alone on the batches the server runs (see the module docstring), called as the
    server calls it: on one worker thread. The median call time, as this machine's load is shared."""
    arrays = [np.asarray(b["instances"], dtype=np.float32) for b in bodies]
    if model.algorithm == "lstm-ad":
        calls = [lambda a=a: model.score(a) for a in arrays[:10]]
        per_call = 1
    else:
        batches = [np.concatenate(arrays[i : i + concurrency]) for i in range(0, len(arrays), concurrency)]
        batches = [b for b in batches if len(b) == concurrency][:10] or batches[:1]
        calls = [lambda b=b: model.predict_proba(b) for b in batches]
        per_call = len(batches[0])

    def timed(call) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    with ThreadPoolExecutor(1) as worker:
        worker.submit(calls[0]).result()  # warm-up, as the server's
        seconds = [worker.submit(timed, call).result() for call in calls]
    return per_call / float(np.median(seconds))
