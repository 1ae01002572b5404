"""The real `kfts serve` (tiny InceptionTime, on 127.0.0.1) under a storm of malformed requests over REST and gRPC:
each is answered with its 4xx or gRPC status and leaves exactly one line in the log (with its request id), no
traceback; the good requests among them are answered right; /metrics shows the predictor's queue and batches;
`--host` binds only the address asked for."""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from prometheus_client.parser import text_string_to_metric_families

from helpers import LENGTH, NAME, Server

ROUNDS = 6


@pytest.fixture(scope="module")
def server(files):  # noqa: F811 - the imported fixture
    server = Server(files["model"], NAME, files["tmp"] / "storm-server.log", "--max-payload-mb", "0.05")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def binary_body(header: dict, raw: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + raw, {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}


def rest_mistakes() -> list[tuple[str, str, str, bytes, dict, int]]:
    """(kind, method, path, body, headers, status) of REST requests that are the client's mistake."""
    v1, v2 = f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"
    row = [0.5] * LENGTH
    fp32 = np.zeros((1, LENGTH), np.float32).tobytes()
    tensor = {"name": "x", "shape": [1, LENGTH], "datatype": "FP32"}
    as_json = {"content-type": "application/json"}
    return [
        ("v1 malformed json", "POST", v1, b'{"instances": [[1, 2', as_json, 400),
        ("v1 not utf-8", "POST", v1, b"\xff\xfe{}", as_json, 400),
        ("v1 wrong length", "POST", v1, json.dumps({"instances": [row[:-1]]}).encode(), as_json, 400),
        ("v1 non-numeric", "POST", v1, json.dumps({"instances": [row[:-1] + ["x"]]}).encode(), as_json, 400),
        ("v1 no instances", "POST", v1, b'{"rows": []}', as_json, 400),
        (
            "v1 unknown model",
            "POST",
            "/v1/models/nope:predict",
            json.dumps({"instances": [row]}).encode(),
            as_json,
            404,
        ),
        ("unsupported content type", "POST", v1, b"<x/>", {"content-type": "application/xml"}, 400),
        ("csv nan", "POST", v1, b",".join([b"nan"] * LENGTH) + b"\n", {"content-type": "text/csv"}, 400),
        ("csv ragged", "POST", v1, b"1,2\n3\n", {"content-type": "text/csv"}, 400),
        ("too large", "POST", v1, b"1" + b",1" * (LENGTH - 1) + b"\n" * 60000, {"content-type": "text/csv"}, 413),
        ("v2 malformed json", "POST", v2, b'{"inputs": [', as_json, 400),
        ("v2 wrong schema", "POST", v2, b'{"inputz": []}', as_json, 400),
        ("v2 nan", "POST", v2, json.dumps({"inputs": [{**tensor, "data": ["NaN"] + row[1:]}]}).encode(), as_json, 400),
        (
            "v2 bytes",
            "POST",
            v2,
            json.dumps({"inputs": [{**tensor, "datatype": "BYTES", "data": ["a"] * LENGTH}]}).encode(),
            as_json,
            400,
        ),
        (
            "v2 fp16 json",
            "POST",
            v2,
            json.dumps({"inputs": [{**tensor, "datatype": "FP16", "data": row}]}).encode(),
            as_json,
            400,
        ),
        (
            "v2 shape",
            "POST",
            v2,
            json.dumps({"inputs": [{**tensor, "shape": [2, LENGTH], "data": row}]}).encode(),
            as_json,
            400,
        ),
        (
            "v2 unknown output",
            "POST",
            v2,
            json.dumps({"inputs": [{**tensor, "data": row}], "outputs": [{"name": "nope"}]}).encode(),
            as_json,
            400,
        ),
        ("binary no header", "POST", v2, fp32, {"content-type": "application/octet-stream"}, 400),
        (
            "binary bad header",
            "POST",
            v2,
            fp32,
            {"content-type": "application/octet-stream", "inference-header-content-length": "many"},
            400,
        ),
        ("binary no inputs", "POST", v2, *binary_body({"id": "1"}, fp32), 400),
        (
            "binary short data",
            "POST",
            v2,
            *binary_body({"inputs": [{**tensor, "parameters": {"binary_data_size": 90}}]}, fp32[:90]),
            400,
        ),
        (
            "binary size not a number",
            "POST",
            v2,
            *binary_body({"inputs": [{**tensor, "parameters": {"binary_data_size": "x"}}]}, fp32),
            400,
        ),
        (
            "binary datatype not a string",
            "POST",
            v2,
            *binary_body({"inputs": [{**tensor, "datatype": 7, "parameters": {"binary_data_size": 96}}]}, fp32),
            400,
        ),
        ("unknown path", "GET", "/v3/nothing", b"", {}, 404),
        ("wrong method", "GET", v2, b"", {}, 405),
    ]


def grpc_mistakes() -> list[tuple[str, pb.ModelInferRequest, grpc.StatusCode]]:
    tensor = pb.ModelInferRequest.InferInputTensor
    zeros = [0.0] * LENGTH
    return [
        (
            "grpc raw short",
            pb.ModelInferRequest(
                model_name=NAME,
                inputs=[tensor(name="x", datatype="FP32", shape=[1, LENGTH])],
                raw_input_contents=[b"abc"],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "grpc typed fp16",
            pb.ModelInferRequest(model_name=NAME, inputs=[tensor(name="x", datatype="FP16", shape=[1, LENGTH])]),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "grpc wrong length",
            pb.ModelInferRequest(
                model_name=NAME,
                inputs=[
                    tensor(
                        name="x",
                        datatype="FP32",
                        shape=[1, 3],
                        contents=pb.InferTensorContents(fp32_contents=[0, 0, 0]),
                    )
                ],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "grpc both encodings",
            pb.ModelInferRequest(
                model_name=NAME,
                inputs=[
                    tensor(
                        name="x",
                        datatype="FP32",
                        shape=[1, LENGTH],
                        contents=pb.InferTensorContents(fp32_contents=zeros),
                    )
                ],
                raw_input_contents=[np.zeros(LENGTH, np.float32).tobytes()],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "grpc unknown datatype",
            pb.ModelInferRequest(model_name=NAME, inputs=[tensor(name="x", datatype="FP99", shape=[1, LENGTH])]),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "grpc unknown model",
            pb.ModelInferRequest(
                model_name="nope",
                inputs=[
                    tensor(
                        name="x",
                        datatype="FP32",
                        shape=[1, LENGTH],
                        contents=pb.InferTensorContents(fp32_contents=zeros),
                    )
                ],
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
    ]


def test_a_storm_of_malformed_requests(server, files):  # noqa: F811
    expected = files["expected"]
    labels, _, _ = expected.classification()
    rest, rpc = rest_mistakes(), grpc_mistakes()
    jobs = [(f"storm-{r}-{i}", kind) for r in range(ROUNDS) for i, kind in enumerate(rest + rpc + [None])]
    channel = grpc.insecure_channel(server.target.grpc)
    stub = GRPCInferenceServiceStub(channel)
    unechoed = []

    def send(job):
        request_id, kind = job
        if kind is None:  # a good request among the bad ones
            answer = server.http.post(
                f"/v1/models/{NAME}:predict",
                json={"instances": expected.rows.tolist()},
                headers={"x-request-id": request_id},
            )
            return answer.status_code, answer.json().get("predictions") == labels
        if isinstance(kind[1], pb.ModelInferRequest):
            try:
                stub.ModelInfer(kind[1], metadata=[("x-request-id", request_id)], timeout=60)
                return grpc.StatusCode.OK, kind[2]
            except grpc.RpcError as e:
                return e.code(), kind[2]
        _, method, path, body, headers, status = kind
        answer = server.http.request(
            method, path, content=body or None, headers={**headers, "x-request-id": request_id}
        )
        if answer.headers.get("x-request-id") != request_id:  # every answer carries its id back
            unechoed.append((kind[0], answer.status_code))
        return answer.status_code, status

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, jobs))
    finally:
        channel.close()
    for (request_id, kind), (got, wanted) in zip(jobs, answers):
        if kind is None:
            assert (got, wanted) == (200, True), request_id
        else:
            assert got == wanted, (kind[0], request_id, got)
    assert server.http.get(f"/v2/models/{NAME}/ready").status_code == 200 and server.process.poll() is None
    assert unechoed == []

    log = server.log.read_text()
    assert "Traceback" not in log and "server fault" not in log
    lines = log.splitlines()
    for request_id, kind in jobs:
        if kind is not None:
            mine = [line for line in lines if f"request_id={request_id}:" in line]
            assert len(mine) == 1 and "client error" in mine[0], (request_id, mine)
    assert not [line for line in lines if "uvicorn.access" in line and re.search(r'" 4\d\d', line)]


def metric(families: dict, name: str, sample: str) -> float:
    (value,) = [s.value for s in families[name].samples if s.name == sample and s.labels["model_name"] == NAME]
    return value


def test_metrics_show_the_queue_and_the_batches(server, files):  # noqa: F811
    rows = files["expected"].rows
    before = {f.name: f for f in text_string_to_metric_families(server.http.get("/metrics").text)}

    def one(i):
        return server.post(f"/v1/models/{NAME}:predict", {"instances": rows[i : i + 2].tolist()}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(16))) == {200}
    after = {f.name: f for f in text_string_to_metric_families(server.http.get("/metrics").text)}

    def grew(name, sample):
        return metric(after, name, sample) - metric(before, name, sample)

    assert metric(after, "kfts_requests_in_flight", "kfts_requests_in_flight") == 0
    assert metric(after, "kfts_requests_queued", "kfts_requests_queued") == 0
    assert grew("kfts_queue_wait_seconds", "kfts_queue_wait_seconds_count") == 16  # one per request
    assert grew("kfts_batch_requests", "kfts_batch_requests_sum") == 16
    assert grew("kfts_batch_rows", "kfts_batch_rows_sum") == 32  # every series in exactly one model call
    calls = grew("kfts_batch_rows", "kfts_batch_rows_count")
    assert 1 <= calls <= 16 and grew("kfts_model_call_seconds", "kfts_model_call_seconds_count") == calls
    assert grew("request_predict_seconds", "request_predict_seconds_count") == 16  # KServe's own


def listening(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port`, from /proc/net/tcp and tcp6 (state 0A: LISTEN;
    addresses in hex, 32-bit words in the machine's byte order); an IPv4-mapped IPv6 address as its IPv4."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            hex_address, hex_port = local.rsplit(":", 1)
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = b"".join(
                int(hex_address[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(hex_address), 8)
            )
            address = ipaddress.ip_address(raw)
            addresses.add(str(getattr(address, "ipv4_mapped", None) or address))
    return addresses


def test_host_binds_only_the_address_asked_for(server):
    assert listening(server.http_port) == {"127.0.0.1"}  # not 0.0.0.0 or ::, KServe's default
    assert listening(server.grpc_port) == {"127.0.0.1"}
