"""What several test modules share, so that no test module imports another: small models fitted in seconds
(one recipe per algorithm, sized by each test), and a real `kfts serve` in a subprocess with the helpers that
build its requests and read its answers. The serving tests' shared model, the fixture `files`, is in
conftest.py, where pytest finds it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from conftest import free_port, make_classification

# -- small models ------------------------------------------------------------------------------------------------

# one network of 4 filters and depth 1, one epoch: a model that saves, loads and predicts, not one that is good
TINY_INCEPTION_TIME = dict(filters=4, depth=1, models=1, epochs=1)
TINY_LSTM_AD = dict(num_layers=1, hidden_size=8, sequence_length=10, epochs=2)


def tiny_inception_time(*, n_per_class: int = 10, length: int = 24, classes=("a", "b", "c"), save_to=None,
                        **params):
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
        torch.testing.assert_close(norm.running_var.double(), reference.running_var * (count - 1) / count,
                                   rtol=1e-4, atol=1e-5)


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
                [sys.executable, "-m", "kfts", "serve", "--model-dir", str(model_dir), "--model-name", name,
                 "--host", "127.0.0.1", "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                 "--device", "cpu", *options], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.http = httpx.Client(base_url=self.url, timeout=60)

    @property
    def target(self):
        from client_matrix import Target
        return Target(self.url, f"127.0.0.1:{self.grpc_port}", self.name)

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
