"""The predictor's parts: batching, the request guard, request decoding, device selection."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import orjson
import pytest

from kfts.core import csvio
from kfts.core.errors import InputError

from helpers import free_port, tiny_inception_time, write_csv


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
    from kfts.serving.batching import Batcher, Worker

    calls = []

    def double(rows):
        calls.append(len(rows))
        time.sleep(0.05)
        return rows * 2

    async def run():
        batcher = Batcher(double, Worker("test-batcher"), max_batch_size=8, max_wait=0.02)
        requests = [np.full((n, 3), i, dtype=np.float32) for i, n in enumerate([1, 2, 1, 3, 1, 1, 2, 5])]
        answers = await asyncio.gather(*(batcher(r) for r in requests))
        for r, a in zip(requests, answers):
            np.testing.assert_array_equal(a, r * 2)

    asyncio.run(run())
    assert sum(calls) == 16 and len(calls) < 8  # batched, and every row went through once
    assert max(calls) >= 8  # a full batch formed


def test_batcher_failure_reaches_every_waiter_and_the_next_batch_runs():
    from kfts.serving.batching import Batcher, Worker

    fail = [True]

    def fn(rows):
        if fail[0]:
            raise RuntimeError("boom")
        return rows

    async def run():
        batcher = Batcher(fn, Worker("test-batcher-failure"), max_batch_size=4, max_wait=0.05)
        results = await asyncio.gather(batcher(np.ones((1, 2))), batcher(np.ones((1, 2))), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        fail[0] = False
        assert (await batcher(np.ones((2, 2)))).shape == (2, 2)

    asyncio.run(run())


def guard_call(
    chunks: list[bytes], headers: dict[str, str], app=None, max_bytes: int = 10, admission=None, method: str = "POST"
):
    """One request through RequestGuard to `app` (default: one that answers 200), under `admission` (default: a
    budget of 1 MiB): (status, response headers, bodies the app received, the scope it saw)."""
    from kfts.serving.admission import Admission
    from kfts.serving.server import RequestGuard

    sent, received, seen = [], [], {}

    async def receive():
        if chunks:
            body = chunks.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def ok(scope, receive, send):
        seen.update(scope)
        message = await receive()
        received.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {
        "type": "http",
        "method": method,
        "path": "/v1/models/m:predict",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    admission = admission or Admission(2**20)
    asyncio.run(
        RequestGuard(app or ok, max_bytes=max_bytes, admission=admission, body_timeout=10)(scope, receive, send)
    )
    if not sent:
        return None, {}, received, seen
    return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}, received, seen


def test_payload_limit():
    assert guard_call([b"0123", b"456789"], {})[::2] == (200, [b"0123456789"])
    assert guard_call([b"0123", b"456789", b"x"], {})[::2] == (413, [])  # chunked, no Content-Length
    assert guard_call([b"x" * 11], {"content-length": "11"})[::2] == (413, [])


def test_the_budget_refuses_what_does_not_fit_now_503_and_what_never_fits_413():
    from kfts.serving.admission import MIN_CHARGE, Admission, Overloaded, TooLarge

    budget = Admission(10 * MIN_CHARGE)
    first = budget.enter(0, binary=True)  # a small body holds MIN_CHARGE
    first.add(8 * MIN_CHARGE)  # its rows
    second = budget.enter(0, binary=True)
    with pytest.raises(Overloaded):  # fits alone, not beside the first: retry later
        second.add(2 * MIN_CHARGE)
    with pytest.raises(TooLarge):  # would not fit even alone
        second.add(10 * MIN_CHARGE)
    assert (budget.held, second.held) == (10 * MIN_CHARGE, MIN_CHARGE)  # a refusal holds nothing more
    first.close()
    second.add(2 * MIN_CHARGE)
    second.close()
    assert budget.held == 0


def test_a_decoded_request_waits_for_room_for_its_rows():
    from kfts.serving.admission import MIN_CHARGE, Admission

    async def run():
        budget = Admission(10 * MIN_CHARGE)
        first = budget.enter(0, binary=True)
        first.add(8 * MIN_CHARGE)
        second = budget.enter(0, binary=True)
        waiting = asyncio.ensure_future(second.decoded(3 * MIN_CHARGE))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # no room yet: it waits, its decoding done, rather than being refused
        first.close()
        await asyncio.wait_for(waiting, 1)
        assert (second.held, budget.held) == (4 * MIN_CHARGE, 4 * MIN_CHARGE)

    asyncio.run(run())


def test_a_request_the_budget_has_no_room_for_gets_503_with_retry_after_unread(caplog):
    from kfts.serving.admission import Admission

    full = Admission(2**20)
    full.enter(2**20 // 20, binary=False)  # a JSON body that holds it all
    with caplog.at_level(logging.WARNING, logger="kfts.serving"):
        status, headers, received, _ = guard_call([b"{}"], {"x-request-id": "busy-1"}, admission=full)
    assert (status, headers["retry-after"], headers["x-request-id"], received) == (503, "1", "busy-1", [])
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("overloaded 503 POST /v1/models/m:predict request_id=busy-1: the predictor is answering")
    status, headers, _, _ = guard_call([b""], {}, admission=full, method="GET")  # probes are never refused
    assert status == 200 and headers["x-request-id"]


def test_a_body_without_length_holds_the_largest_size_until_read_then_its_own(caplog):
    from kfts.serving.admission import CURRENT, DECODE_EXPANSION, MIN_CHARGE, Admission

    budget, held = Admission(2**30), []

    async def app(scope, receive, send):
        await receive()
        held.append(CURRENT.get().held)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    guard_call([b"0123", b"4567"], {}, app=app, max_bytes=2**20, admission=budget)
    assert held == [max(8 * DECODE_EXPANSION, MIN_CHARGE)] and budget.held == 0


def test_the_model_queue_is_bounded():
    from kfts.serving.admission import Overloaded
    from kfts.serving.batching import Worker

    async def run():
        worker = Worker("test-bounded", max_waiting=2)
        calls = [asyncio.ensure_future(worker.call(lambda: time.sleep(0.05), [worker.arrived()], 1)) for _ in range(2)]
        with pytest.raises(Overloaded, match="2 requests are waiting"):
            worker.arrived()
        await asyncio.gather(*calls)
        assert worker.waiting == 0
        await worker.call(lambda: None, [worker.arrived()], 1)

    asyncio.run(run())


def test_client_values_and_ids_are_cut_in_answers_and_logs(caplog):
    from kfts.serving.decoding import matrix

    with pytest.raises(InputError) as e:
        matrix([[1.0, "x" * 100_000]], "instances")
    assert len(str(e.value)) < 300 and "xxx..." in str(e.value)
    with caplog.at_level(logging.WARNING, logger="kfts.serving"):
        status, headers, _, _ = guard_call([b"x" * 11], {"x-request-id": "i" * 100_000})
    assert status == 413 and len(headers["x-request-id"]) == 203
    assert len(caplog.records[0].getMessage()) < 600


def test_every_request_gets_an_id_that_kserve_and_the_model_see(caplog):
    _, _, _, scope = guard_call([b"{}"], {"x-request-id": "client-7"})
    assert scope["state"]["request_id"] == "client-7" and dict(scope["headers"])[b"x-request-id"] == b"client-7"
    _, _, _, scope = guard_call([b"{}"], {})
    new = scope["state"]["request_id"]
    assert len(new) == 32 and dict(scope["headers"])[b"x-request-id"] == new.encode()
    with caplog.at_level(logging.WARNING, logger="kfts.serving"):
        status, headers, _, _ = guard_call([b"x" * 11], {"x-request-id": "big-1"})
    assert status == 413 and headers["x-request-id"] == "big-1"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("client error 413 POST /v1/models/m:predict request_id=big-1: the request body is")


def test_a_fault_in_the_server_is_500_with_its_traceback_logged_once(caplog):
    async def broken(scope, receive, send):
        await receive()
        raise ZeroDivisionError("a bug")

    with caplog.at_level(logging.WARNING, logger="kfts.serving"):
        status, headers, _, _ = guard_call([b"{}"], {"x-request-id": "r-9"}, app=broken)
    assert status == 500 and headers["x-request-id"] == "r-9"
    (record,) = caplog.records
    assert record.getMessage() == "server fault POST /v1/models/m:predict request_id=r-9"
    assert record.exc_info[0] is ZeroDivisionError  # the traceback goes to the log


def test_grpc_statuses_one_line_for_mistakes_traceback_for_faults(caplog):
    import grpc
    from kserve.errors import InvalidInput, ModelNotFound

    from kfts.serving.server import GrpcErrors

    class Aborted(Exception):
        pass

    class Context:
        def invocation_metadata(self):
            return ()

        async def abort(self, code, details):
            raise Aborted(code, details)

    class Request:
        id = "grpc-req-1"

    def status_of(error):
        with pytest.raises(Aborted) as aborted:
            asyncio.run(GrpcErrors().handle_exception(error, Request(), Context(), "/inference/ModelInfer"))
        return aborted.value.args

    with caplog.at_level(logging.WARNING, logger="kfts.serving"):
        assert status_of(InvalidInput("bad rows")) == (grpc.StatusCode.INVALID_ARGUMENT, "bad rows")
        assert status_of(ModelNotFound("m"))[0] == grpc.StatusCode.NOT_FOUND
        code, details = status_of(KeyError("bug"))
    assert code == grpc.StatusCode.INTERNAL and "grpc-req-1" in details
    mistakes, fault = caplog.records[:2], caplog.records[2]
    assert [r.exc_info for r in mistakes] == [None, None]
    assert mistakes[0].getMessage() == (
        "client error INVALID_ARGUMENT gRPC /inference/ModelInfer request_id=grpc-req-1: bad rows"
    )
    assert fault.exc_info[0] is KeyError and "server fault gRPC" in fault.getMessage()


def test_client_errors_leave_uvicorns_access_line_out():
    from kfts.serving.server import SkipClientErrors

    def access(status):
        return logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            "",
            0,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5", "POST", "/v2/models/m/infer", "1.1", status),
            None,
        )

    assert [SkipClientErrors().filter(access(s)) for s in (200, 400, 404, 413, 422, 500, 503)] == [
        True,
        False,
        False,
        False,
        False,
        True,
        True,
    ]


def test_json_rows_errors_name_the_row_and_column():
    from kserve.errors import InvalidInput

    from kfts.serving.decoding import matrix

    np.testing.assert_array_equal(matrix([[1, 2.5], [3, 4]], "instances"), [[1, 2.5], [3, 4]])
    np.testing.assert_array_equal(matrix([1, 2], "instances", univariate=True), [[1], [2]])
    for rows, message in [
        ([[1, 2], [3]], "instances: row 2: has 1 values, the rows above have 2"),
        ([[1, 2], [3, "4"]], "instances: row 2, column 2: '4' is not a number"),
        ([[1, True]], "instances: row 1, column 2: True is not a number"),
        ([[None, 1]], "instances: row 1, column 1: null is not a number"),
        ([[1, 2], 3], "instances: row 2: 3 is not a row"),
        ([[1, 1e39]], "instances: row 1, column 2: 1e+39 is too large: values must fit in float32"),
        ([[1, 2], [float("nan"), 1]], "instances: row 2, column 1: nan is not allowed"),
    ]:
        with pytest.raises(InputError) as e:
            matrix(rows, "instances")
        assert str(e.value).startswith(message)
    for rows, message in [  # one series: bare numbers are rows of one value
        ([1, True], "instances: row 2, column 1: True is not a number"),
        ([1, 1e39], "instances: row 2, column 1: 1e+39 is too large"),
        ([[1], 2, [3, 4]], "instances: row 3: has 2 values, the rows above have 1"),
    ]:
        with pytest.raises(InputError) as e:
            matrix(rows, "instances", univariate=True)
        assert str(e.value).startswith(message)
    for rows, message in [([], "the list is empty"), ({"a": 1}, "expected a list of rows")]:
        with pytest.raises(InvalidInput, match=message):
            matrix(rows, "instances")


# -- the device a model is served on (kfts serve --device); no GPU here, so CUDA is pretended where needed ------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("tiny") / "model"
    tiny_inception_time(n_per_class=4, length=8, filters=2, batch_size=8, save_to=model_dir)
    return model_dir


@pytest.mark.parametrize(
    "asked, cuda_visible, expected",
    [
        ("cpu", False, "cpu"),
        ("auto", False, "cpu"),
        ("cpu", True, "cpu"),
        ("auto", True, "cuda"),
        ("cuda", True, "cuda"),
    ],
)
def test_the_predictor_loads_its_model_for_the_device_asked_for(monkeypatch, tiny_model, asked, cuda_visible, expected):
    import torch

    from kfts.serving import model as serving_model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_visible)
    loaded, load_model = [], serving_model.load_model

    def spy(model_dir, device):
        loaded.append(load_model(model_dir, device=device))
        return loaded[-1]

    monkeypatch.setattr(serving_model, "load_model", spy)
    predictor = serving_model.KftsModel("m", str(tiny_model), device=asked)
    if expected == "cpu":
        assert predictor.load() and predictor.model.device_.type == "cpu"
        answer = asyncio.run(predictor.predict({"instances": np.zeros((2, 8)).tolist()}, {}, {}))
        assert len(orjson.loads(answer)["predictions"]) == 2
    else:  # the model is set up for the GPU; its first call (the warm-up) then needs one, which is not here
        with pytest.raises((AssertionError, RuntimeError), match="(?i)cuda|nvidia"):
            predictor.load()
        assert loaded[0].device_.type == "cuda"


def test_serve_on_cuda_without_a_gpu_is_one_line(tiny_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    from helpers import run_cli

    result = run_cli(
        "serve",
        "--model-dir",
        tiny_model,
        "--device",
        "cuda",
        "--host",
        "127.0.0.1",
        "--http-port",
        str(free_port()),
        "--grpc-port",
        str(free_port()),
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == "error: --device cuda was asked for, but no CUDA GPU is visible\n"
