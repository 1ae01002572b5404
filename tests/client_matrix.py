"""The client matrix: a served kfts model called the ways KServe users call it, each answer equal to
`kfts predict` on the same rows.

One Target is one running predictor (`kfts serve` in tests/test_serving_*.py, or the predictor container:
any base URL and gRPC address), serving one model; Expected holds that model's `kfts predict` answers for some
rows. `check(mode, target, expected)` runs one cell of the matrix and raises AssertionError on a wrong answer:

- rest-json:   kserve.InferenceRESTClient (V2), JSON `data`, FP32 and FP64; FP16 is refused (400: JSON has
               no FP16);
- rest-binary: the same client with the binary tensor extension both ways (`binary_data_size` inputs,
               `binary_data_output`), FP32, FP64 and FP16;
- grpc-typed:  kserve.InferenceGRPCClient with typed `contents`, FP32 and FP64, answered in typed contents;
- grpc-raw:    the same client with `InferInput.set_data_from_numpy` (`raw_input_contents`), FP32, FP64 and
               FP16, answered in `raw_output_contents`;
- triton-http: Triton's `tritonclient.http` (a V2 client that is not KServe's), JSON data, which it sends with
               no Content-Type, and binary data; it names no outputs, so every output must come back (the Open
               Inference Protocol's rule), with no request option set;
- rest-json-no-type: curl, a V2 JSON body with no Content-Type header at all;
- v1-json:     curl, `{"instances": ...}` on /v1/models/NAME:predict;
- csv:         curl, the inference file as text/csv: exactly the bytes of `kfts predict`.

Rows are rounded to float16 once (Expected), so that FP16, FP32 and FP64 requests carry the same values.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODES = ("rest-json", "rest-binary", "grpc-typed", "grpc-raw", "triton-http", "rest-json-no-type", "v1-json", "csv")
DTYPES = {
    "rest-json": ("FP32", "FP64"),
    "rest-binary": ("FP32", "FP64", "FP16"),
    "grpc-typed": ("FP32", "FP64"),
    "grpc-raw": ("FP32", "FP64", "FP16"),
}
NUMPY = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
PROBABILITIES_ATOL = 2e-6  # kfts predict writes 6 decimals


@dataclass
class Target:
    http: str  # base URL, e.g. http://127.0.0.1:8080
    grpc: str  # host:port, e.g. 127.0.0.1:8081
    model_name: str


@dataclass
class Expected:
    """What `kfts predict` answers for `rows` (float16-exact float32 values) with the model at model_dir."""

    algorithm: str
    rows: np.ndarray
    csv: bytes  # the rows as an inference file
    plain: bytes  # kfts predict's output
    full: bytes  # with --probabilities (inception-time) or --flag (lstm-ad, when the model has a threshold)
    options: dict  # the request options that give `full`: {"probabilities": True} or {"flag": True} or {}

    @classmethod
    def of(cls, model_dir, rows) -> Expected:
        from kfts.cli import main
        from kfts.cli.sample_data import write_csv
        from kfts.jobs.load import load_model

        model = load_model(model_dir, device="cpu")
        rows = np.asarray(rows, dtype=np.float16).astype(np.float32)
        if model.algorithm == "inception-time":
            options = {"probabilities": True}
        else:
            options = {"flag": True} if model.threshold is not None else {}
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "rows.csv"
            write_csv(data, rows.tolist())
            answers = []
            for flags in ([], [f"--{k}" for k in options]):
                out = Path(tmp) / "predictions.csv"
                code = main(
                    [
                        "predict",
                        "--model-dir",
                        str(model_dir),
                        "--input",
                        str(data),
                        "--output",
                        str(out),
                        "--device",
                        "cpu",
                        *flags,
                    ]
                )
                assert code == 0, f"kfts predict exited {code}"
                answers.append(out.read_bytes())
            return cls(model.algorithm, rows, data.read_bytes(), answers[0], answers[1], options)

    # -- the expected answer, parsed ----------------------------------------------------------------------------

    def classification(self):
        """(labels, probabilities [n, classes], classes) from `kfts predict --probabilities`."""
        table = list(csv.reader(io.StringIO(self.full.decode())))
        classes = [c[len("p_") :] for c in table[0][1:]]
        return [r[0] for r in table[1:]], np.array([[float(v) for v in r[1:]] for r in table[1:]]), classes

    def detection(self):
        """(scores [T], reconstructions [T, d], flags [T] or None), NaN for the first sequence."""
        table = np.array(
            [[float(v) if v else np.nan for v in line.split(",")] for line in self.full.decode().splitlines()]
        )
        d = self.rows.shape[1]
        return table[:, 0], table[:, 1 : 1 + d], table[:, 1 + d] if "flag" in self.options else None


# -- the cells ------------------------------------------------------------------------------------------------------


def check(mode: str, target: Target, expected: Expected) -> None:
    """One cell of the matrix, every datatype the mode carries; AssertionError on a wrong answer."""
    if mode in DTYPES:
        for datatype in DTYPES[mode]:
            asyncio.run(_check_v2(mode, datatype, target, expected))
        if mode == "rest-json":
            _check_fp16_json_refused(target, expected)
    elif mode == "triton-http":
        _check_triton(target, expected)
    elif mode == "rest-json-no-type":
        _check_no_content_type(target, expected)
    elif mode == "v1-json":
        _check_v1(target, expected)
    elif mode == "csv":
        _check_csv(target, expected)
    else:
        raise ValueError(f"no mode {mode!r}: one of {MODES}")


def run_matrix(target: Target, expected: Expected) -> dict[str, str]:
    """Every cell for one served model: {mode: "ok" or the failure}."""
    results = {}
    for mode in MODES:
        try:
            check(mode, target, expected)
            results[mode] = "ok"
        except Exception as e:  # noqa: BLE001 - reported per cell
            results[mode] = f"{type(e).__name__}: {e}"
    return results


async def _check_v2(mode: str, datatype: str, target: Target, expected: Expected) -> None:
    from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest

    values = expected.rows.astype(NUMPY[datatype])
    tensor = InferInput("input-0", list(values.shape), datatype)
    binary = mode in ("rest-binary", "grpc-raw")
    tensor.set_data_from_numpy(values, binary_data=binary)
    parameters = {k: v for k, v in expected.options.items() if k == "probabilities"}
    if mode == "rest-binary":
        parameters["binary_data_output"] = True
    request = InferRequest(target.model_name, [tensor], parameters=parameters or None)
    where = f"{mode} {datatype}"
    if mode.startswith("rest"):
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=120))
        headers: dict = {}
        try:
            response = await client.infer(target.http, request, model_name=target.model_name, response_headers=headers)
        finally:
            await client.close()
        # the header that says where the JSON ends and the binary tensors begin: there only with binary data
        assert ("inference-header-content-length" in headers) == binary, (where, headers)
    else:
        async with InferenceGRPCClient(target.grpc, retries=0, timeout=120) as client:
            response = await client.infer(request)
        encoding = _grpc_answer_encoding(target, request)
        assert encoding == ("raw" if binary else "typed"), (where, encoding)
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    _compare_v2(where, outputs, expected)


def _grpc_answer_encoding(target: Target, request) -> str:
    """How the server encodes its answer to `request`: "raw" (raw_output_contents) or "typed" (contents)."""
    import grpc
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    with grpc.insecure_channel(target.grpc) as channel:
        answer = GRPCInferenceServiceStub(channel).ModelInfer(request.to_grpc(), timeout=120)
    if answer.raw_output_contents:
        assert all(not o.HasField("contents") for o in answer.outputs)
        return "raw"
    return "typed"


def _text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.ravel(values)]


def _compare_v2(where: str, outputs: dict, expected: Expected) -> None:
    if expected.algorithm == "inception-time":
        labels, proba, classes = expected.classification()
        assert set(outputs) == {"label", "probabilities", "classes"}, (where, set(outputs))
        assert _text(outputs["label"]) == labels, where
        assert _text(outputs["classes"]) == classes, where
        np.testing.assert_allclose(outputs["probabilities"], proba, atol=PROBABILITIES_ATOL, err_msg=where)
        return
    scores, reconstructions, flags = expected.detection()
    assert set(outputs) == {"score", "reconstruction"} | ({"anomaly"} if flags is not None else set()), where
    np.testing.assert_allclose(outputs["score"], scores, rtol=1e-5, atol=1e-5, err_msg=where)  # NaN where empty
    np.testing.assert_allclose(outputs["reconstruction"], reconstructions, rtol=1e-5, atol=1e-5, err_msg=where)
    if flags is not None:
        np.testing.assert_array_equal(outputs["anomaly"], flags, err_msg=where)


def _check_triton(target: Target, expected: Expected) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(target.http.removeprefix("http://"), network_timeout=120)
    try:
        for binary in (False, True):
            tensor = triton.InferInput("input-0", list(expected.rows.shape), "FP32")
            tensor.set_data_from_numpy(expected.rows, binary_data=binary)
            result = client.infer(target.model_name, [tensor])
            names = [o["name"] for o in result.get_response()["outputs"]]
            _compare_v2(f"triton-http binary={binary}", {name: result.as_numpy(name) for name in names}, expected)
    finally:
        client.close()


def _check_no_content_type(target: Target, expected: Expected) -> None:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(expected.rows.shape),
                "datatype": "FP32",
                "data": expected.rows.ravel().tolist(),
            }
        ]
    }
    status, content = _curl(f"{target.http}/v2/models/{target.model_name}/infer", json.dumps(body).encode(), "")
    assert status == 200, (status, content[:300])
    outputs = {
        o["name"]: np.array(
            [np.nan if v is None else v for v in o["data"]] if o["datatype"] != "BYTES" else o["data"],
            dtype=object if o["datatype"] == "BYTES" else float,
        ).reshape(o["shape"])
        for o in json.loads(content)["outputs"]
    }
    _compare_v2("rest-json-no-type", outputs, expected)


def _check_fp16_json_refused(target: Target, expected: Expected) -> None:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(expected.rows.shape),
                "datatype": "FP16",
                "data": expected.rows.ravel().tolist(),
            }
        ]
    }
    status, content = _curl(
        f"{target.http}/v2/models/{target.model_name}/infer", json.dumps(body).encode(), "application/json"
    )
    assert status == 400 and b"FP16" in content, (status, content[:300])


def _curl(url: str, body: bytes, content_type: str, **headers) -> tuple[int, bytes]:
    """POST with curl, as a user would: (status, body). An empty content_type sends no Content-Type at all."""
    command = [
        "curl",
        "-sS",
        "--max-time",
        "120",
        "-X",
        "POST",
        "-H",
        f"Content-Type:{content_type and ' '}{content_type}",
        "--data-binary",
        "@-",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        url,
    ]
    for key, value in headers.items():
        command[1:1] = ["-H", f"{key}: {value}"]
    result = subprocess.run(command, input=body, capture_output=True, timeout=180)
    assert result.returncode == 0, f"curl exited {result.returncode}: {result.stderr.decode()}"
    content, _, status = result.stdout.rpartition(b"\n")
    return int(status), content


def _check_v1(target: Target, expected: Expected) -> None:
    url = f"{target.http}/v1/models/{target.model_name}:predict"
    body = json.dumps({"instances": expected.rows.tolist()}).encode()
    option_headers = {f"kfts-{k}": "true" for k in expected.options}
    status, content = _curl(url, body, "application/json", **option_headers)
    assert status == 200, (status, content[:300])
    predictions = json.loads(content)["predictions"]
    if expected.algorithm == "inception-time":
        labels, proba, classes = expected.classification()
        assert [p["label"] for p in predictions] == labels
        got = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
        np.testing.assert_allclose(got, proba, atol=PROBABILITIES_ATOL)
        status, content = _curl(url, body, "application/json")
        assert status == 200 and json.loads(content) == {"predictions": labels}, (status, content[:300])
        return
    scores, reconstructions, flags = expected.detection()
    assert len(predictions) == len(scores)
    for p, score, reconstruction, flag in zip(
        predictions, scores, reconstructions, flags if flags is not None else [None] * len(scores)
    ):
        if np.isnan(score):
            assert p["score"] is None and p["reconstruction"] is None, p
            continue
        np.testing.assert_allclose(p["score"], score, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(p["reconstruction"], reconstruction, rtol=1e-5, atol=1e-5)
        if flag is not None:
            assert p["anomaly"] == int(flag), (p, flag)


def _check_csv(target: Target, expected: Expected) -> None:
    url = f"{target.http}/v1/models/{target.model_name}:predict"
    status, content = _curl(url, expected.csv, "text/csv")
    assert status == 200 and content == expected.plain, (status, content[:300], expected.plain[:300])
    status, content = _curl(url, expected.csv, "text/csv", **{f"kfts-{k}": "true" for k in expected.options})
    assert status == 200 and content == expected.full, (status, content[:300], expected.full[:300])
