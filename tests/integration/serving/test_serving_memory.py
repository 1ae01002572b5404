"""The predictor holds its memory budget: the real `kfts serve` (a univariate LSTM-AD, whose answers are the
largest per byte of request) gets requests of the largest size (--max-payload-mb, its default) in every
encoding at once: V1 JSON, V2 JSON, V2 binary, text/csv and gRPC raw contents. Its peak resident memory
(VmHWM) stays under the memory limit of the InferenceService `kfts deploy render` writes, its health probe
answers throughout, and what it has no room for gets 503 with Retry-After (gRPC UNAVAILABLE), which the
clients honour until every request is answered in full.

The container itself is not run under that limit here (the images are built elsewhere); its peak RSS is what
the kernel's memory cgroup would count against it.

The storm and its checks are plain functions: benchmarks/serving_faults.py runs the same storm and reports
the figures.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson

from helpers import Server, tiny_lstm_ad

NAME = "detector"
PAYLOAD_MB = 16  # kfts serve --max-payload-mb's default
ENCODINGS = ("v1 json", "v2 json", "v2 binary", "csv", "grpc raw")
PROBE_TIMEOUT_S = 5  # a kubelet probe with timeoutSeconds 5 would pass


@dataclass
class Storm:
    """What a storm saw: per request its encoding, rows sent, final status and the refusals before it."""

    answers: list = field(default_factory=list)  # (encoding, rows, status, rows answered, refusals)
    probes: list = field(default_factory=list)  # (seconds, status or the error)
    seconds: float = 0.0


def bodies(payload_bytes: int, seed: int = 0) -> dict[str, tuple[bytes, int]]:
    """The largest body of each encoding that fits `payload_bytes`, of one series (values of six decimals),
    with its number of rows."""
    rng = np.random.default_rng(seed)
    n = payload_bytes // 10  # "0.123456," per value, and a little room for the framing
    values = np.round(rng.random(n), 6)
    out = {}
    out["v1 json"] = orjson.dumps({"instances": values.tolist()})
    out["v2 json"] = orjson.dumps(
        {"inputs": [{"name": "input-0", "shape": [n, 1], "datatype": "FP64", "data": values.tolist()}]}
    )
    raw = rng.random(payload_bytes // 4 - 64).astype(np.float32)
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(raw), 1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.nbytes},
                }
            ]
        }
    )
    out["v2 binary"] = head + raw.tobytes()
    out["csv"] = "\n".join(f"{v:.6f}" for v in values).encode() + b"\n"
    out["grpc raw"] = rng.random(payload_bytes // 4 - 256).astype(np.float32).tobytes()
    for name, body in out.items():
        assert len(body) <= payload_bytes, (name, len(body))
    return {
        "v1 json": (out["v1 json"], n),
        "v2 json": (out["v2 json"], n),
        "v2 binary": (out["v2 binary"], len(raw)),
        "csv": (out["csv"], n),
        "grpc raw": (out["grpc raw"], len(out["grpc raw"]) // 4),
    }


def send(server: Server, encoding: str, body: bytes, deadline: float) -> tuple[int | str, int, int]:
    """One request, sent again after each refusal (503 with Retry-After, gRPC UNAVAILABLE) as a client
    should, until `deadline`: (final status, rows answered, refusals)."""
    refusals = 0
    while True:
        if encoding == "grpc raw":
            status, rows, retry_after = _grpc(server, body)
        else:
            status, rows, retry_after = _rest(server, encoding, body)
        if status not in (503, "UNAVAILABLE") or time.monotonic() > deadline:
            return status, rows, refusals
        assert retry_after is not None, f"{encoding}: {status} without Retry-After"
        refusals += 1
        time.sleep(float(retry_after))


def _rest(server: Server, encoding: str, body: bytes):
    path, headers = f"/v1/models/{NAME}:predict", {"content-type": "application/json"}
    if encoding == "csv":
        headers = {"content-type": "text/csv"}
    elif encoding == "v2 json":
        path = f"/v2/models/{NAME}/infer"
    elif encoding == "v2 binary":
        path = f"/v2/models/{NAME}/infer"
        head_length = body.index(b"}]}") + 3
        headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(head_length)}
    with httpx.Client(base_url=server.url, timeout=600) as client:
        answer = client.post(path, content=body, headers=headers)
    if answer.status_code != 200:
        return answer.status_code, 0, answer.headers.get("retry-after")
    if encoding == "csv":
        return 200, answer.content.count(b"\n"), None
    if encoding == "v1 json":
        return 200, len(orjson.loads(answer.content)["predictions"]), None
    json_length = int(answer.headers.get("inference-header-content-length", len(answer.content)))
    outputs = {o["name"]: o for o in orjson.loads(answer.content[:json_length])["outputs"]}
    return 200, outputs["score"]["shape"][0], None


def _grpc(server: Server, raw: bytes):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    request = pb.ModelInferRequest(
        model_name=NAME,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[len(raw) // 4, 1])],
        raw_input_contents=[raw],
    )
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as channel:
        try:
            answer = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=600)
        except grpc.RpcError as e:
            pushback = dict(e.trailing_metadata() or ()).get("grpc-retry-pushback-ms")
            return e.code().name, 0, None if pushback is None else int(pushback) / 1000
    (score,) = [o for o in answer.outputs if o.name == "score"]
    return 200, score.shape[0], None


def storm(server: Server, payload_bytes: int, per_encoding: int, deadline_s: float = 480) -> Storm:
    """`per_encoding` requests of each encoding at once, every one the largest body; the health probe asked
    every 0.2 s meanwhile."""
    made = bodies(payload_bytes)
    jobs = [(encoding, *made[encoding]) for _ in range(per_encoding) for encoding in ENCODINGS]
    result, done = Storm(), threading.Event()

    def probe():
        with httpx.Client(base_url=server.url, timeout=PROBE_TIMEOUT_S) as client:
            while not done.is_set():
                start = time.perf_counter()
                try:
                    status = client.get("/v2/health/ready").status_code
                except httpx.TransportError as e:
                    status = type(e).__name__
                result.probes.append((time.perf_counter() - start, status))
                time.sleep(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    start, deadline = time.perf_counter(), time.monotonic() + deadline_s
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            finals = list(pool.map(lambda job: send(server, job[0], job[1], deadline), jobs))
    finally:
        done.set()
        prober.join()
    result.seconds = time.perf_counter() - start
    result.answers = [(encoding, rows, *final) for (encoding, _, rows), final in zip(jobs, finals)]
    return result


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def rendered_memory_limit() -> int:
    """The memory limit of the InferenceService `kfts deploy render` writes by default, in bytes."""
    from kfts.kubeflow.deploy import render_inference_service
    from kfts.serving.admission import memory_bytes

    manifest = render_inference_service(name=NAME, model_uri="s3://models/detector")
    return memory_bytes(manifest["spec"]["predictor"]["model"]["resources"]["limits"]["memory"])


def served_detector(tmp: Path) -> Path:
    """A univariate LSTM-AD: every time step a row, so a body of the largest size holds the most rows."""
    model_dir = tmp / "detector"
    tiny_lstm_ad(np.sin(np.arange(2000) / 10)[:, None].astype(np.float32), save_to=model_dir)
    return model_dir


def test_a_storm_of_the_largest_requests_stays_under_the_memory_limit(tmp_path):
    server = Server(served_detector(tmp_path), NAME, tmp_path / "server.log")
    try:
        server.wait_ready()
        result = storm(server, PAYLOAD_MB * 2**20, per_encoding=2)
        peak = peak_rss_bytes(server.process.pid)
        alive = server.process.poll() is None
    finally:
        server.stop()
    limit = rendered_memory_limit()
    log = server.log.read_text()
    assert alive, log[-3000:]
    assert peak < limit, f"peak RSS {peak >> 20} MiB, the rendered limit {limit >> 20} MiB"
    for encoding, rows, status, answered, refusals in result.answers:
        assert (status, answered) == (200, rows), (encoding, status, answered, rows, refusals)
    assert sum(r[4] for r in result.answers) > 0  # the budget did refuse some, for a while
    assert result.probes and all(status == 200 for _, status in result.probes), result.probes
    assert "Traceback" not in log and "server fault" not in log
    assert log.count("overloaded 503") + log.count("overloaded UNAVAILABLE") == sum(r[4] for r in result.answers)
