"""What test modules share, so that no test module imports another and none imports conftest.py (which holds
only fixtures): the CLI as a user runs it, small generated data and models fitted in seconds (one recipe per
algorithm, sized by each test), the container engine, a real `kfts serve` in a subprocess with the helpers
that build its requests and read its answers, and the Kubernetes schemas."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from kfts.cli import sample_data

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_cli(
    *args, check: bool = False, timeout: float = 600, env: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """`python -m kfts ARGS` in a subprocess (in `env`, by default this one's), as a user would run it; text
    output captured."""
    result = subprocess.run(
        [sys.executable, "-m", "kfts", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**(env or os.environ), "PYTHONUNBUFFERED": "1"},
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kfts {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def write_csv(path: Path, rows) -> Path:
    sample_data.write_csv(path, rows)
    return path


make_classification = sample_data.classification


def container_engine() -> str:
    import shutil

    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman"):
        os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "images" / "containers.conf"))
        return "podman"
    pytest.fail(
        "no container engine: install Podman (apt-get install podman buildah runc debootstrap; "
        ".ci/run does) or start Docker, then `make images`"
    )


def built_image(engine: str, image: str) -> str:
    if subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.fail(f"image {image} is not built: run `make images` (make test does it first)")
    return image


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base_url: str, process=None, timeout: float = 300) -> None:
    """Until `base_url`/v2/health/ready answers 200; fails early if `process` (the server) exited."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base_url} was not ready within {timeout} s")


# -- Kubernetes schemas -----------------------------------------------------------------------------------------

SCHEMAS = ROOT.parent / "shared" / "schemas"


@functools.cache
def crd_validator(file: str, version: str):
    """A jsonschema validator for the OpenAPI v3 schema of `version` in the CRD ../shared/schemas/`file`
    (checked and built once: the schemas are large)."""
    import jsonschema
    import yaml

    if not (SCHEMAS / file).is_file():
        pytest.fail(f"{SCHEMAS / file} is not there (CI puts ../shared beside the project)")
    crd = yaml.load((SCHEMAS / file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = entry["schema"]["openAPIV3Schema"]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def predictions_csv(model, values, **options) -> str:
    """What `kfts predict` writes for `values`: the model's algorithm's batch prediction CSV."""
    from kfts.algorithms import of

    return of(model).predictions_csv(model, values, **options)


# -- small models ------------------------------------------------------------------------------------------------

# one network of 4 filters and depth 1, one epoch: a model that saves, loads and predicts, not one that is good
TINY_INCEPTION_TIME = dict(filters=4, depth=1, models=1, epochs=1)
TINY_LSTM_AD = dict(num_layers=1, hidden_size=8, sequence_length=10, epochs=2)


def tiny_inception_time(*, n_per_class: int = 10, length: int = 24, classes=("a", "b", "c"), save_to=None, **params):
    """An InceptionTime (TINY_INCEPTION_TIME, changed by `params`) fitted on the CPU with seed 0 on
    make_classification(n_per_class, length, classes), saved to `save_to` when given: (model, series)."""
    from kfts.algorithms.inception_time.estimator import InceptionTime
    from kfts.core.csvio import LabeledSeries

    labels, values = make_classification(n_per_class=n_per_class, length=length, classes=classes)
    model = InceptionTime(InceptionTime.Params(**{**TINY_INCEPTION_TIME, **params}), device="cpu", seed=0)
    model.fit(LabeledSeries(labels, values))
    if save_to is not None:
        model.save(save_to)
    return model, values


def tiny_lstm_ad(values: np.ndarray, *, save_to=None, **params):
    """An LSTM-AD (TINY_LSTM_AD, changed by `params`) fitted on the CPU with seed 0 on `values`, saved to
    `save_to` when given."""
    from kfts.algorithms.lstm_ad.estimator import LstmAD

    model = LstmAD(LstmAD.Params(**{**TINY_LSTM_AD, **params}), device="cpu", seed=0).fit(values)
    if save_to is not None:
        model.save(save_to)
    return model


def assert_statistics_of(network, x) -> None:
    """That every BatchNorm of an InceptionNetworks holds the mean and (biased) variance of its input over the
    series `x` ([n, 1, time], scaled as the model scales them): the reference is a training-mode forward pass of
    the whole of `x` as one batch, in float64, by torch's own BatchNorm (momentum None: the batch's own figures,
    as torch.optim.swa_utils.update_bn sets them; torch keeps the unbiased variance)."""
    import copy

    import torch

    net = copy.deepcopy(network).double().train()
    for norm in net.batch_norms():
        norm.reset_running_stats()
        norm.momentum = None
    with torch.no_grad():
        net(x.double())
    count = x.shape[0] * x.shape[-1]
    for norm, reference in zip(network.batch_norms(), net.batch_norms()):
        torch.testing.assert_close(norm.running_mean.double(), reference.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            norm.running_var.double(), reference.running_var * (count - 1) / count, rtol=1e-4, atol=1e-5
        )


# -- the tiny InceptionTime the serving tests share ----------------------------------------------------------------

NAME = "it"  # its model name on the server
LENGTH = 24  # time steps per series


# -- a real `kfts serve` in a subprocess ----------------------------------------------------------------------------


class Server:
    """`python -m kfts serve` on 127.0.0.1 and free ports, its output in a log file (a full pipe would block it)."""

    def __init__(self, model_dir: Path, name: str, log: Path, *options: str):
        self.name, self.log = name, log
        self.http_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kfts",
                    "serve",
                    "--model-dir",
                    str(model_dir),
                    "--model-name",
                    name,
                    "--host",
                    "127.0.0.1",
                    "--http-port",
                    str(self.http_port),
                    "--grpc-port",
                    str(self.grpc_port),
                    "--device",
                    "cpu",
                    *options,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.http = httpx.Client(base_url=self.url, timeout=60)

    @property
    def target(self):
        from client_matrix import Target

        return Target(self.url, f"127.0.0.1:{self.grpc_port}", self.name)

    def wait_ready(self, timeout: float = 300) -> Server:
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
        from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import (
            GRPCInferenceServiceStub,
        )
        from kserve.protocol.infer_type import InferResponse

        values = np.asarray(values, dtype=np.float32)
        request = pb.ModelInferRequest(
            model_name=model_name or self.name,
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="input-0",
                    datatype="FP32",
                    shape=list(values.shape),
                    contents=pb.InferTensorContents(fp32_contents=values.ravel().tolist()),
                )
            ],
            parameters={k: pb.InferParameter(bool_param=v) for k, v in parameters.items()},
        )
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            response = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        return {o.name: o.as_numpy() for o in InferResponse.from_grpc(response).outputs}


def v2_body(values: np.ndarray, **parameters) -> dict:
    values = np.asarray(values, dtype=np.float32)
    body = {
        "inputs": [
            {"name": "input-0", "shape": list(values.shape), "datatype": "FP32", "data": values.ravel().tolist()}
        ]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def v2_outputs(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return {
        o["name"]: np.array(
            [np.nan if v is None else v for v in o["data"]] if o["datatype"] != "BYTES" else o["data"]
        ).reshape(o["shape"])
        for o in response.json()["outputs"]
    }


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


# -- an anomaly score as LSTM-AD's reports show it -------------------------------------------------------------

THRESHOLD = -12.0


def lstm_ad_like(n=3000, seed=0):
    """values [n, 2], log-likelihood scores (NaN on the first 50 rows; normal around -5; a labelled anomaly at
    1200-1259 scored down to -250; three false alarms just under THRESHOLD; a labelled range at 2500-2519 the
    scores miss) and the 0/1 labels."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    values = np.stack([np.sin(steps / 20), 2 * np.cos(steps / 33)], axis=1) + 0.05 * rng.normal(size=(n, 2))
    values[1200:1260, 0] += 1.5
    scores = rng.normal(-5, 1.2, n)
    scores[:50] = np.nan
    scores[1200:1260] = np.linspace(-30, -250, 60)
    scores[[400, 1800, 2100]] = [-13, -14.5, -12.5]
    labels = np.zeros(n, dtype=np.int8)
    labels[1190:1270] = labels[2500:2520] = 1
    return values.astype(np.float32), scores, labels
