"""The predictor's parts (batching, payload limit, request decoding), and the real-server helper that
test_serving_inception_time.py and test_serving_lstm_ad.py use."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import write_csv

from kfts import csvio
from kfts.errors import InputError


# -- a real `kfts serve` in a subprocess ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m kfts serve` on free ports, its output in a log file (a full pipe would block it)."""

    def __init__(self, model_dir: Path, name: str, log: Path, *options: str):
        self.name, self.log = name, log
        self.http_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kfts", "serve", "--model-dir", str(model_dir), "--model-name", name,
                 "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port), "--device", "cpu",
                 *options], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def wait_ready(self, timeout: float = 300) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"kfts serve exited {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if self.http.get(f"/v2/models/{self.name}/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"kfts serve not ready after {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def post(self, path: str, body: bytes | dict, content_type: str = "application/json", **headers):
        if isinstance(body, dict):
            return self.http.post(path, json=body, headers=headers)
        return self.http.post(path, content=body, headers={"content-type": content_type, **headers})

    def grpc_infer(self, values: np.ndarray, model_name: str | None = None, **parameters):
        """V2 ModelInfer over gRPC with one FP32 tensor -> {output name: numpy array}."""
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
        from kserve.protocol.infer_type import InferResponse
        values = np.asarray(values, dtype=np.float32)
        request = pb.ModelInferRequest(
            model_name=model_name or self.name,
            inputs=[pb.ModelInferRequest.InferInputTensor(
                name="input-0", datatype="FP32", shape=list(values.shape),
                contents=pb.InferTensorContents(fp32_contents=values.ravel().tolist()))],
            parameters={k: pb.InferParameter(bool_param=v) for k, v in parameters.items()})
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            response = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        return {o.name: o.as_numpy() for o in InferResponse.from_grpc(response).outputs}


def v2_body(values: np.ndarray, **parameters) -> dict:
    values = np.asarray(values, dtype=np.float32)
    body = {"inputs": [{"name": "input-0", "shape": list(values.shape), "datatype": "FP32",
                        "data": values.ravel().tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return body


def v2_outputs(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return {o["name"]: np.array([np.nan if v is None else v for v in o["data"]] if o["datatype"] != "BYTES"
                                else o["data"]).reshape(o["shape"])
            for o in response.json()["outputs"]}


def raw_http(port: int, head: bytes) -> bytes:
    """Send request headers only and read the answer: what a server says before reading the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


# -- unit tests ------------------------------------------------------------------------------------------------

def test_csv_bytes_read_like_a_file(tmp_path):
    rows = [[1.5, 2, 3], [4, 5, -6.25]]
    path = write_csv(tmp_path / "x.csv", rows)
    from_file = csvio.read_series_rows(path)
    from_bytes = csvio.read_series_rows(csvio.CsvBytes(path.read_bytes()))
    np.testing.assert_array_equal(from_file, from_bytes)
    with pytest.raises(InputError) as file_error:
        csvio.read_series_rows(write_csv(tmp_path / "bad.csv", [[1, 2], [3, "x"]]))
    with pytest.raises(InputError) as bytes_error:
        csvio.read_series_rows(csvio.CsvBytes(b"1,2\n3,x\n", name="body"))
    assert str(bytes_error.value) == str(file_error.value).replace(str(tmp_path / "bad.csv"), "body")


def test_batcher_joins_concurrent_requests_and_splits_answers():
    from kfts.serving.model import Batcher
    calls = []

    def double(rows):
        calls.append(len(rows))
        time.sleep(0.05)
        return rows * 2

    async def run():
        batcher = Batcher(double, ThreadPoolExecutor(1), max_batch_size=8, max_wait=0.02)
        requests = [np.full((n, 3), i, dtype=np.float32) for i, n in enumerate([1, 2, 1, 3, 1, 1, 2, 5])]
        answers = await asyncio.gather(*(batcher(r) for r in requests))
        for r, a in zip(requests, answers):
            np.testing.assert_array_equal(a, r * 2)

    asyncio.run(run())
    assert sum(calls) == 16 and len(calls) < 8  # batched, and every row went through once
    assert max(calls) >= 8  # a full batch formed


def test_batcher_failure_reaches_every_waiter_and_the_next_batch_runs():
    from kfts.serving.model import Batcher
    fail = [True]

    def fn(rows):
        if fail[0]:
            raise RuntimeError("boom")
        return rows

    async def run():
        batcher = Batcher(fn, ThreadPoolExecutor(1), max_batch_size=4, max_wait=0.05)
        results = await asyncio.gather(batcher(np.ones((1, 2))), batcher(np.ones((1, 2))),
                                       return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        fail[0] = False
        assert (await batcher(np.ones((2, 2)))).shape == (2, 2)

    asyncio.run(run())


def asgi_call(app, chunks: list[bytes], headers: dict[str, str]):
    sent, received = [], []

    async def receive():
        if chunks:
            body = chunks.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def inner(scope, receive, send):
        message = await receive()
        received.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(inner)(scope, receive, send))
    return sent[0]["status"] if sent else None, received


def test_payload_limit():
    from kfts.serving.server import PayloadLimit

    def limited(inner):
        return PayloadLimit(inner, max_bytes=10)

    assert asgi_call(limited, [b"0123", b"456789"], {}) == (200, [b"0123456789"])
    assert asgi_call(limited, [b"0123", b"456789", b"x"], {}) == (413, [])  # chunked, no Content-Length
    assert asgi_call(limited, [b"x" * 11], {"content-length": "11"}) == (413, [])


def test_json_rows_errors_name_the_row_and_column():
    from kserve.errors import InvalidInput

    from kfts.serving.model import _matrix
    np.testing.assert_array_equal(_matrix([[1, 2.5], [3, 4]], "instances"), [[1, 2.5], [3, 4]])
    np.testing.assert_array_equal(_matrix([1, 2], "instances", univariate=True), [[1], [2]])
    for rows, message in [
        ([[1, 2], [3]], "instances: row 2: has 1 values, the rows above have 2"),
        ([[1, 2], [3, "4"]], "instances: row 2, column 2: '4' is not a number"),
        ([[1, True]], "instances: row 1, column 2: True is not a number"),
        ([[None, 1]], "instances: row 1, column 1: null is not a number"),
        ([[1, 2], 3], "instances: row 2: 3 is not a row"),
        ([[1, 1e39]], "instances: row 1, column 2: inf is not allowed"),
    ]:
        with pytest.raises(InputError) as e:
            _matrix(rows, "instances")
        assert str(e.value).startswith(message)
    for rows, message in [([], "the list is empty"), ({"a": 1}, "expected a list of rows")]:
        with pytest.raises(InvalidInput, match=message):
            _matrix(rows, "instances")
