"""The real `kfts serve` with a tiny LSTM-AD model: the client matrix (tests/client_matrix.py: V1, V2 REST JSON
and binary, V2 gRPC typed and raw, CSV) answers equal `kfts predict`; client mistakes get 4xx and the server
keeps serving."""

from __future__ import annotations

import numpy as np
import pytest

from client_matrix import MODES, Expected, check
from helpers import Server, tiny_lstm_ad, v2_body

NAME = "detector"
L = 10  # sequence length


def series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.stack([np.sin(t / 5), np.cos(t / 7)], axis=1).astype(np.float32) + 0.05 * rng.normal(size=(n, 2))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lstm-serving")
    tiny_lstm_ad(series(300, seed=0), sequence_length=L, batch_size=16, dropout=0.0, save_to=tmp / "model")
    values = series(80, seed=1)
    values[50] += 3  # an anomaly, so that some flags are 1
    # what kfts predict answers for these rows (rounded to float16, as every encoding can carry them)
    return {"model": tmp / "model", "expected": Expected.of(tmp / "model", values), "tmp": tmp}


@pytest.fixture(scope="module")
def server(files):
    server = Server(files["model"], NAME, files["tmp"] / "server.log")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_client_matrix(server, files, mode):
    check(mode, server.target, files["expected"])


def test_the_matrix_sees_the_anomaly(files):
    """The expected answers hold flags of both kinds, so that the matrix compares something."""
    _, _, flags = files["expected"].detection()
    assert set(flags[L:]) == {0.0, 1.0} and np.isnan(flags[:L]).all()


GOOD = {"instances": series(L + 5, seed=2).tolist()}
BAD_REQUESTS = [
    (
        "wrong number of series",
        f"/v1/models/{NAME}:predict",
        {"instances": [[1.0, 2.0, 3.0]] * (L + 5)},
        None,
        400,
        "rows have 3 values (series), the model was trained on 2",
    ),
    (
        "too short",
        f"/v1/models/{NAME}:predict",
        {"instances": [[1.0, 2.0]] * L},
        None,
        400,
        f"instances: has {L} time steps; with sequence-length {L} at least {L + 1} are needed",
    ),
    (
        "too short V2",
        f"/v2/models/{NAME}/infer",
        v2_body(np.zeros((L, 2))),
        None,
        400,
        f"input 'input-0': has {L} time steps; with sequence-length {L} at least {L + 1} are needed",
    ),
    (
        "non-numeric",
        f"/v1/models/{NAME}:predict",
        {"instances": [[1.0, 2.0]] * L + [[1.0, "x"]]},
        None,
        400,
        f"row {L + 1}, column 2: 'x' is not a number",
    ),
    ("empty", f"/v1/models/{NAME}:predict", {"instances": []}, None, 400, "the list is empty"),
    ("malformed JSON", f"/v1/models/{NAME}:predict", b"{", "application/json", 400, "Unrecognized request format"),
    ("unknown model", "/v1/models/nope:predict", GOOD, None, 404, "nope"),
    (
        "NaN in V2",
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": "x", "shape": [L + 1, 2], "datatype": "FP32", "data": [1.0] * (2 * L + 1) + ["NaN"]}]},
        None,
        400,
        f"row {L + 1}, column 2: 'NaN' is not a number",
    ),
    (
        "wrong number of series V2",
        f"/v2/models/{NAME}/infer",
        v2_body(np.zeros((L + 5, 3))),
        None,
        400,
        "the model was trained on 2",
    ),
    (
        "CSV wrong number of series",
        f"/v1/models/{NAME}:predict",
        b"1,2,3\n" * (L + 5),
        "text/csv",
        400,
        "request body: row 1:",
    ),
    (
        "CSV non-numeric",
        f"/v1/models/{NAME}:predict",
        b"1,2\n" * L + b"1,zz\n",
        "text/csv",
        400,
        f"request body: row {L + 1}, column 2: 'zz' is not a number",
    ),
]


@pytest.mark.parametrize(
    "what, path, body, content_type, status, message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_client_mistakes_get_4xx_and_the_server_keeps_serving(server, what, path, body, content_type, status, message):
    answer = server.post(path, body, content_type) if content_type else server.post(path, body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert server.post(f"/v1/models/{NAME}:predict", GOOD).status_code == 200


def test_a_grpc_answer_over_8_mib_arrives(server):
    """gRPC's own default caps what a server sends at 8 MiB; an LSTM-AD answer (score, reconstruction and flag
    per row) is about twice its request, so a request well within --max-payload-mb (16) had its answer, already
    computed, thrown away."""
    import asyncio

    from kserve import InferenceGRPCClient
    from kserve.protocol.infer_type import InferInput, InferRequest

    # 600,000 rows of 2 series: 4.8 MB in, over 8 MiB out
    values = np.tile(series(1000, seed=3), (600, 1)).astype(np.float32)
    tensor = InferInput("input-0", list(values.shape), "FP32")
    tensor.set_data_from_numpy(values, binary_data=True)

    async def infer():
        async with InferenceGRPCClient(server.target.grpc, retries=0, timeout=300) as client:
            return await client.infer(InferRequest(NAME, [tensor]))

    outputs = {o.name: o.as_numpy() for o in asyncio.run(infer()).outputs}
    assert sum(a.nbytes for a in outputs.values()) > 8 * 2**20
    assert outputs["score"].shape == (len(values),) and np.isfinite(outputs["score"][L:]).all()
