"""The real `kfts serve` with a tiny LSTM-AD model: V1, V2 REST, V2 gRPC and CSV answers equal
`kfts predict`; client mistakes get 4xx and the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_csv
from test_serving import Server, v2_body, v2_outputs

from kfts.cli import main
from kfts.lstm_ad import LstmAD, Params

NAME = "detector"
L = 10  # sequence length


def series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.stack([np.sin(t / 5), np.cos(t / 7)], axis=1).astype(np.float32) + 0.05 * rng.normal(size=(n, 2))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lstm-serving")
    model = LstmAD(Params(sequence_length=L, hidden_size=8, num_layers=1, epochs=2, batch_size=16,
                          dropout=0.0), device="cpu", seed=0)
    model.fit(series(300, seed=0))
    model.save(tmp / "model")
    values = series(80, seed=1)
    values[50] += 3  # an anomaly, so that some flags are 1
    test = write_csv(tmp / "test_data.csv", values.tolist())
    expected = {}
    for flag in (False, True):
        out = tmp / f"predictions-{flag}.csv"
        assert main(["predict", "--model-dir", str(tmp / "model"), "--input", str(test), "--output", str(out),
                     "--device", "cpu"] + (["--flag"] if flag else [])) == 0
        expected[flag] = out.read_bytes()
    return {"model": tmp / "model", "test": test, "values": values, "expected": expected, "tmp": tmp}


@pytest.fixture(scope="module")
def server(files):
    server = Server(files["model"], NAME, files["tmp"] / "server.log")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def expected_table(files):
    """kfts predict --flag, parsed: scores [T], reconstructions [T, 2], flags [T] (NaN for the first sequence)."""
    rows = [[float(v) if v else np.nan for v in line.split(",")]
            for line in files["expected"][True].decode().splitlines()]
    table = np.array(rows)
    assert table.shape == (len(files["values"]), 4)
    return table[:, 0], table[:, 1:3], table[:, 3]


def test_csv_is_byte_for_byte_kfts_predict(server, files):
    body = files["test"].read_bytes()
    plain = server.post(f"/v1/models/{NAME}:predict", body, "text/csv")
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/csv")
    assert plain.content == files["expected"][False]
    flagged = server.post(f"/v1/models/{NAME}:predict", body, "text/csv", **{"kfts-flag": "true"})
    assert flagged.content == files["expected"][True]


def test_v1_matches_kfts_predict(server, files):
    scores, reconstructions, flags = expected_table(files)
    answer = server.post(f"/v1/models/{NAME}:predict", {"instances": files["values"].tolist()})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == len(scores)
    assert all(p == {"score": None, "reconstruction": None, "anomaly": None} for p in predictions[:L])
    np.testing.assert_allclose([p["score"] for p in predictions[L:]], scores[L:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose([p["reconstruction"] for p in predictions[L:]], reconstructions[L:], atol=1e-5)
    assert [p["anomaly"] for p in predictions[L:]] == flags[L:].astype(int).tolist()
    assert 1 in flags[L:]


def test_v2_rest_and_grpc_match_kfts_predict(server, files):
    scores, reconstructions, flags = expected_table(files)
    for outputs in (v2_outputs(server.post(f"/v2/models/{NAME}/infer", v2_body(files["values"]))),
                    server.grpc_infer(files["values"])):
        assert outputs.keys() == {"score", "reconstruction", "anomaly"}
        np.testing.assert_allclose(outputs["score"], scores, rtol=1e-5, atol=1e-5)  # NaN where the CSV is empty
        np.testing.assert_allclose(outputs["reconstruction"], reconstructions, atol=1e-5)
        np.testing.assert_array_equal(outputs["anomaly"], flags)


GOOD = {"instances": series(L + 5, seed=2).tolist()}
BAD_REQUESTS = [
    ("wrong number of series", f"/v1/models/{NAME}:predict", {"instances": [[1.0, 2.0, 3.0]] * (L + 5)}, None, 400,
     "rows have 3 values (series), the model was trained on 2"),
    ("too short", f"/v1/models/{NAME}:predict", {"instances": [[1.0, 2.0]] * L}, None, 400,
     f"at least {L + 1} are needed"),
    ("non-numeric", f"/v1/models/{NAME}:predict", {"instances": [[1.0, 2.0]] * L + [[1.0, "x"]]}, None, 400,
     f"row {L + 1}, column 2: 'x' is not a number"),
    ("empty", f"/v1/models/{NAME}:predict", {"instances": []}, None, 400, "the list is empty"),
    ("malformed JSON", f"/v1/models/{NAME}:predict", b"{", "application/json", 400, "Unrecognized request format"),
    ("unknown model", "/v1/models/nope:predict", GOOD, None, 404, "nope"),
    ("NaN in V2", f"/v2/models/{NAME}/infer",
     {"inputs": [{"name": "x", "shape": [L + 1, 2], "datatype": "FP32", "data": [1.0] * (2 * L + 1) + ["NaN"]}]},
     None, 400, f"row {L + 1}, column 2: nan is not allowed"),
    ("wrong number of series V2", f"/v2/models/{NAME}/infer", v2_body(np.zeros((L + 5, 3))), None, 400,
     "the model was trained on 2"),
    ("CSV wrong number of series", f"/v1/models/{NAME}:predict", b"1,2,3\n" * (L + 5), "text/csv", 400,
     "request body: row 1:"),
    ("CSV non-numeric", f"/v1/models/{NAME}:predict", b"1,2\n" * L + b"1,zz\n", "text/csv", 400,
     f"request body: row {L + 1}, column 2: 'zz' is not a number"),
]


@pytest.mark.parametrize("what, path, body, content_type, status, message", BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_client_mistakes_get_4xx_and_the_server_keeps_serving(server, what, path, body, content_type, status,
                                                              message):
    answer = server.post(path, body, content_type) if content_type else server.post(path, body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert server.post(f"/v1/models/{NAME}:predict", GOOD).status_code == 200
