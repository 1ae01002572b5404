"""The real `kfts serve` with a tiny InceptionTime model: the client matrix (tests/client_matrix.py: V1, V2 REST
JSON and binary, V2 gRPC typed and raw, CSV) answers equal `kfts predict`; client mistakes get 4xx and the
server keeps serving."""

from __future__ import annotations

import dataclasses
import gzip
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import orjson
import pytest

from client_matrix import MODES, Expected, check
from helpers import LENGTH, NAME, Server, raw_http, v2_body, v2_outputs


@pytest.fixture(scope="module")
def server(files):  # noqa: F811 - the imported fixture
    server = Server(
        files["model"], NAME, files["tmp"] / "server.log", "--max-payload-mb", "0.05", "--max-batch-wait-ms", "5"
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_health_readiness_metadata(server):
    assert server.http.get("/v2/health/ready").status_code == 200
    assert server.http.get(f"/v1/models/{NAME}").json() == {"name": NAME, "ready": True}
    metadata = server.http.get(f"/v2/models/{NAME}").json()
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, LENGTH]}]


@pytest.mark.parametrize("mode", MODES)
def test_client_matrix(server, files, mode):
    check(mode, server.target, files["expected"])


def test_v2_outputs_by_default_and_by_name(server, files):
    """No outputs named: every output the model has (the Open Inference Protocol's rule), without the
    probabilities option; named: those alone."""
    values = files["expected"].rows
    labels, proba, classes = files["expected"].classification()
    for outputs in (v2_outputs(server.post(f"/v2/models/{NAME}/infer", v2_body(values))), server.grpc_infer(values)):
        assert outputs.keys() == {"label", "probabilities", "classes"}
        assert [str(v, "utf-8") if isinstance(v, bytes) else v for v in outputs["label"]] == labels
        np.testing.assert_allclose(outputs["probabilities"], proba, atol=2e-6)
    body = {**v2_body(values), "outputs": [{"name": "probabilities"}]}  # asking for it is enough
    outputs = v2_outputs(server.post(f"/v2/models/{NAME}/infer", body))
    assert outputs.keys() == {"probabilities"}
    np.testing.assert_allclose(outputs["probabilities"], proba, atol=2e-6)


def test_v2_binary_data_per_output(server, files):
    """binary_data_output for the request, an output's binary_data over it (the binary tensor extension)."""
    labels, proba, _ = files["expected"].classification()
    body = {
        **v2_body(files["expected"].rows),
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}],
    }
    answer = server.post(f"/v2/models/{NAME}/infer", body)
    assert answer.status_code == 200, answer.text
    json_length = int(answer.headers["inference-header-content-length"])
    head = orjson.loads(answer.content[:json_length])
    label, probabilities = head["outputs"]
    assert label["data"] == labels and "parameters" not in label
    assert probabilities["parameters"] == {"binary_data_size": proba.size * 4} and "data" not in probabilities
    got = np.frombuffer(answer.content[json_length:], dtype="<f4").reshape(proba.shape)
    np.testing.assert_allclose(got, proba, atol=2e-6)


def test_concurrent_requests_are_answered_each_with_its_own_rows(server, files):
    labels, _, _ = files["expected"].classification()
    values = files["expected"].rows

    def one(i):
        return server.post(f"/v1/models/{NAME}:predict", {"instances": values[i : i + 1 + i % 3].tolist()})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(len(values))))
    for i, answer in enumerate(answers):
        assert answer.json()["predictions"] == labels[i : i + 1 + i % 3]
    metrics = server.http.get("/metrics").text
    assert f'request_predict_seconds_count{{model_name="{NAME}"}}' in metrics


GOOD = {"instances": [[0.5] * LENGTH]}
BAD_REQUESTS = [
    (
        "wrong length",
        f"/v1/models/{NAME}:predict",
        {"instances": [[1.0] * (LENGTH - 1)]},
        None,
        400,
        f"rows have {LENGTH - 1} time steps, the model was trained on {LENGTH}",
    ),
    (
        "non-numeric",
        f"/v1/models/{NAME}:predict",
        {"instances": [[1.0] * (LENGTH - 1) + ["abc"]]},
        None,
        400,
        f"row 1, column {LENGTH}: 'abc' is not a number",
    ),
    (
        "missing value",
        f"/v1/models/{NAME}:predict",
        {"instances": [[None] * LENGTH]},
        None,
        400,
        "row 1, column 1: null is not a number",
    ),
    ("empty", f"/v1/models/{NAME}:predict", {"instances": []}, None, 400, "the list is empty"),
    ("no instances", f"/v1/models/{NAME}:predict", {"rows": [[1.0] * LENGTH]}, None, 400, '"instances"'),
    (
        "malformed JSON",
        f"/v1/models/{NAME}:predict",
        b'{"instances": [[1, 2',
        "application/json",
        400,
        "Unrecognized request format",
    ),
    ("unknown model", "/v1/models/nope:predict", GOOD, None, 404, "nope"),
    ("unknown model V2", "/v2/models/nope/infer", v2_body(np.zeros((1, LENGTH))), None, 404, "nope"),
    (
        "NaN in V2",
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": "x", "shape": [1, LENGTH], "datatype": "FP32", "data": ["NaN"] + [1.0] * (LENGTH - 1)}]},
        None,
        400,
        "input 'x': row 1, column 1: 'NaN' is not a number, as datatype FP32 needs",
    ),
    (
        "non-numeric V2",
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": "x", "shape": [1, LENGTH], "datatype": "FP32", "data": ["abc"] * LENGTH}]},
        None,
        400,
        "row 1, column 1: 'abc' is not a number",
    ),
    # numpy would read these as numbers: "2.5" and true as 2.5 and 1.0, and 0.5 as the INT32 0
    (
        "number as text V2",
        f"/v2/models/{NAME}/infer",
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, LENGTH],
                    "datatype": "FP32",
                    "data": [1.0] * (LENGTH + 2) + ["2.5"] + [1.0] * (LENGTH - 3),
                }
            ]
        },
        None,
        400,
        "row 2, column 3: '2.5' is not a number",
    ),
    (
        "boolean V2",
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": "x", "shape": [1, LENGTH], "datatype": "FP64", "data": [[True] + [1.0] * (LENGTH - 1)]}]},
        None,
        400,
        "row 1, column 1: True is not a number, as datatype FP64 needs",
    ),
    (
        "beyond float32 V2",
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": "x", "shape": [1, LENGTH], "datatype": "FP64", "data": [1.0] * (LENGTH - 1) + [1e39]}]},
        None,
        400,
        f"row 1, column {LENGTH}: 1e+39 is too large: values must fit in float32",
    ),
    (
        "beyond float32 as FP32 V2",
        f"/v2/models/{NAME}/infer",
        {
            "inputs": [
                {"name": "x", "shape": [2, LENGTH], "datatype": "FP32", "data": [1.0] * (2 * LENGTH - 1) + [-1e40]}
            ]
        },
        None,
        400,
        f"input 'x': row 2, column {LENGTH}: -1e+40 is too large: values must fit in float32",
    ),
    (
        "fraction as INT32 V2",
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": "x", "shape": [1, LENGTH], "datatype": "INT32", "data": [1] * (LENGTH - 1) + [0.5]}]},
        None,
        400,
        f"row 1, column {LENGTH}: 0.5 is not an integer, as datatype INT32 needs",
    ),
    (
        "shape and data disagree V2",
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": "x", "shape": [2, LENGTH], "datatype": "FP32", "data": [1.0] * LENGTH}]},
        None,
        400,
        "cannot reshape",
    ),
    ("wrong length V2", f"/v2/models/{NAME}/infer", v2_body(np.zeros((2, 5))), None, 400, "rows have 5 time steps"),
    (
        "an option neither on nor off V2",
        f"/v2/models/{NAME}/infer",
        v2_body(np.zeros((1, LENGTH)), probabilities="maybe"),
        None,
        400,
        "parameter 'probabilities': 'maybe' is neither on nor off: send true or false",
    ),
    ("malformed JSON V2", f"/v2/models/{NAME}/infer", b'{"inputs": [', "application/json", 400, "not JSON"),
    # the binary tensor extension's flags are booleans: KServe reads any truthy value, "false" too, as true
    (
        "binary_data_output as text V2",
        f"/v2/models/{NAME}/infer",
        v2_body(np.zeros((1, LENGTH)), binary_data_output="false"),
        None,
        400,
        "malformed V2 request: parameters.binary_data_output: 'false' is not a JSON boolean (true or false)",
    ),
    (
        "binary_data as a number V2",
        f"/v2/models/{NAME}/infer",
        {**v2_body(np.zeros((1, LENGTH))), "outputs": [{"name": "label", "parameters": {"binary_data": 1}}]},
        None,
        400,
        "malformed V2 request: outputs[0].parameters.binary_data: 1 is not a JSON boolean (true or false)",
    ),
    (
        "CSV with NaN",
        f"/v1/models/{NAME}:predict",
        b",".join([b"nan"] * LENGTH) + b"\n",
        "text/csv",
        400,
        "request body: row 1, column 1: 'nan' is not allowed: values must be finite numbers",
    ),
    (
        "CSV non-numeric",
        f"/v1/models/{NAME}:predict",
        b",".join([b"1"] * (LENGTH - 1) + [b"x"]) + b"\n",
        "text/csv",
        400,
        f"request body: row 1, column {LENGTH}: 'x' is not a number",
    ),
    ("CSV empty", f"/v1/models/{NAME}:predict", b"", "text/csv", 400, "request body: the file is empty"),
    (
        "CSV wrong length",
        f"/v1/models/{NAME}:predict",
        b"1,2,3\n",
        "text/csv",
        400,
        f"rows have 3 time steps, the model was trained on {LENGTH}",
    ),
    (
        "unsupported content type",
        f"/v1/models/{NAME}:predict",
        b"<x/>",
        "application/xml",
        400,
        "unsupported content type",
    ),
    (
        "payload over the limit",
        f"/v1/models/{NAME}:predict",
        b"1" + b",1" * (LENGTH - 1) + b"\n" * 60000,
        "text/csv",
        413,
        "larger than the limit",
    ),
]


@pytest.mark.parametrize(
    "what, path, body, content_type, status, message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_client_mistakes_get_4xx_and_the_server_keeps_serving(server, what, path, body, content_type, status, message):
    answer = server.post(path, body, content_type) if content_type else server.post(path, body)
    assert answer.status_code == status, answer.text
    assert message in answer.json().get("error", answer.text)
    assert server.post(f"/v1/models/{NAME}:predict", GOOD).status_code == 200


def test_an_on_off_header_that_is_neither_is_refused(server):
    for value, status in (("yes", 200), ("0", 200), ("maybe", 400)):
        answer = server.post(f"/v1/models/{NAME}:predict", GOOD, **{"kfts-probabilities": value})
        assert answer.status_code == status, answer.text
    assert answer.json()["error"] == (
        "header kfts-probabilities: 'maybe' is neither on nor off: send true or false (or 1/0, yes/no, on/off)"
    )


def test_an_oversized_body_is_refused_before_it_is_read(server):
    answer = raw_http(
        server.http_port,
        f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: text/csv\r\nContent-Length: {10**9}\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert server.post(f"/v1/models/{NAME}:predict", GOOD).status_code == 200


def test_grpc_mistakes_get_status_codes(server, files):
    for values, model, code in [
        (np.zeros((1, 3)), NAME, grpc.StatusCode.INVALID_ARGUMENT),
        (np.zeros((1, LENGTH)), "nope", grpc.StatusCode.NOT_FOUND),
        (np.zeros((1000, LENGTH)), NAME, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ]:
        with pytest.raises(grpc.RpcError) as e:
            server.grpc_infer(values, model_name=model)
        assert e.value.code() == code
    assert server.grpc_infer(files["values"][:2])["label"].shape == (2,)


@pytest.mark.parametrize("mode", ["grpc-raw", "v1-json", "csv"])
def test_the_matrix_fails_on_a_wrong_answer(server, files, mode):
    """The matrix compares what it should: the same cell against the answers for other rows fails."""
    expected = files["expected"]
    other = Expected.of(files["model"], expected.rows[::-1])
    with pytest.raises(AssertionError):
        check(mode, server.target, dataclasses.replace(expected, plain=other.plain, full=other.full))


def test_no_client_can_unload_or_load_the_model(server, files):
    """KServe's model repository extension (kserve/protocol/model_repository_extension.py, REST routes in
    kserve/protocol/rest/v2_endpoints.py, gRPC in kserve/protocol/grpc/servicer.py) is refused over REST and
    gRPC: the model stays served, so readiness keeps meaning that it answers."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    for action in ("unload", "load"):
        answer = server.http.post(f"/v2/repository/models/{NAME}/{action}")
        assert answer.status_code == 403, answer.text
        assert f"model '{NAME}' cannot be {action}ed: kfts serve serves the model of its --model-dir" in answer.text
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        for call, request in (
            (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=NAME)),
            (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=NAME)),
        ):
            with pytest.raises(grpc.RpcError) as e:
                call(request, timeout=60)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
            assert "--model-dir" in e.value.details()
        assert stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=60).extensions == []
    assert server.http.get("/v2").json()["extensions"] == []  # the server's metadata does not offer it
    assert server.http.get("/v2/health/ready").status_code == 200
    assert server.post(f"/v1/models/{NAME}:predict", GOOD).status_code == 200
    assert server.grpc_infer(files["values"][:2])["label"].shape == (2,)


def grpc_call(server, **request):
    """ModelInfer with a ModelInferRequest of these fields (model_name: the server's): its RpcError."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel, pytest.raises(grpc.RpcError) as e:
        GRPCInferenceServiceStub(channel).ModelInfer(pb.ModelInferRequest(model_name=NAME, **request), timeout=60)
    return e.value


def test_grpc_refuses_what_rest_refuses_with_the_same_message(server):
    """A negative size in a shape (numpy would read it as "what is left") and a model version (kfts serve serves
    one model, which has none): 400 over REST, INVALID_ARGUMENT over gRPC, one message naming the field."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    values = [0.5] * LENGTH
    rest = {"inputs": [{"name": "x", "shape": [-1, LENGTH], "datatype": "FP32", "data": values}]}
    tensor, good = (
        pb.ModelInferRequest.InferInputTensor(
            name="x", datatype="FP32", shape=shape, contents=pb.InferTensorContents(fp32_contents=values)
        )
        for shape in ([-1, LENGTH], [1, LENGTH])
    )
    for path, body, grpc_request, message in (
        (
            f"/v2/models/{NAME}/infer",
            rest,
            dict(inputs=[tensor]),
            f"malformed V2 request: inputs[0].shape: [-1, {LENGTH}] is not a list of sizes",
        ),
        (
            f"/v2/models/{NAME}/versions/2/infer",
            v2_body(np.zeros((1, LENGTH))),
            dict(inputs=[good], model_version="2"),
            "model_version '2': kfts serve serves one model, without versions",
        ),
    ):
        answer = server.post(path, body)
        assert answer.status_code == 400, answer.text
        assert message in answer.json()["error"]
        error = grpc_call(server, **grpc_request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert message in error.details()
    assert server.grpc_infer(np.zeros((1, LENGTH)))["label"].shape == (1,)


def test_bytes_after_the_binary_tensors_are_refused(server):
    """A body longer than its JSON (Inference-Header-Content-Length) and its tensors' binary_data_size: a client
    that miscounts is told so, not answered from a part of what it sent."""
    data = np.zeros((1, LENGTH), dtype="<f4").tobytes()
    size = len(data)
    head = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, LENGTH], "datatype": "FP32", "parameters": {"binary_data_size": size}}]}
    )
    for extra, status in ((b"", 200), (b"\0" * 8, 400)):
        answer = server.post(
            f"/v2/models/{NAME}/infer",
            head + data + extra,
            "application/octet-stream",
            **{"inference-header-content-length": str(len(head))},
        )
        assert answer.status_code == status, answer.text
    assert answer.json()["error"] == (
        f"malformed V2 request: the body has {len(head) + size + 8} bytes, {len(head) + size} expected: {len(head)} "
        f"of JSON (inference-header-content-length) and {size} of binary data (the inputs' binary_data_size)"
    )


def test_a_compressed_body_gets_415(server):
    """The predictor decodes no Content-Encoding: a gzip body is refused for what it is (415), not read as JSON
    that is not UTF-8; identity is no encoding."""
    body = orjson.dumps(GOOD)
    for path in (f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"):
        answer = server.post(path, gzip.compress(body), **{"content-encoding": "gzip"})
        assert answer.status_code == 415, answer.text
        assert answer.json()["error"] == (
            "Content-Encoding 'gzip' is not supported: send the body uncompressed (Content-Encoding: identity)"
        )
    answer = server.post(f"/v1/models/{NAME}:predict", body, **{"content-encoding": "identity"})
    assert answer.status_code == 200, answer.text
    assert "client error 415 POST" in server.log.read_text()
