"""The KServe predictor: one kserve.Model that serves any kfts model artifact.

KServe does the protocols (V1 and Open Inference Protocol V2 over REST and gRPC), health, readiness and
Prometheus metrics; this class turns a decoded request into arrays, runs the estimator and builds the answer.

Requests (NAME is the model name, `--model-name`), for any algorithm:

- V1 `POST /v1/models/NAME:predict` with `{"instances": [rows]}` -> `{"predictions": [...]}` (predict()
  answers its JSON, written a chunk of rows at a time).
- V2 `POST /v2/models/NAME/infer` (or gRPC ModelInfer): one numeric tensor (FP32, FP64, FP16 or an integer
  type) of rows, in any encoding of the protocol: JSON `data` or the binary tensor extension
  (`binary_data_size`) over REST, typed `contents` or `raw_input_contents` over gRPC. The request's `outputs`
  pick outputs by name; naming none, every output (the Open Inference Protocol's rule). Answers come back as they were asked (_v2_outputs): over gRPC raw to raw inputs and
  typed to typed ones; over REST JSON, or binary with `binary_data_output` or an output's `binary_data`.
- `text/csv` body on the V1 predict URL: the inference file of docs/FORMATS.md, answered with exactly the
  bytes of `kfts predict` (the algorithm's predictions_csv), as `text/csv`.

What a row is, the outputs and the V1 answer are the algorithm's (its Adapter, kfts/algorithms/<name>/
serving.py: InceptionTime a series per row and `label`, `probabilities`, `classes`; LSTM-AD a time step
per row and `score`, `reconstruction` [+ `anomaly`]). Request options (InceptionTime `probabilities`, LSTM-AD
`flag` and `context_rows`) come from the V2 request parameters (`{"parameters": {"probabilities": true}}`) or
from the headers `kfts-NAME` (`kfts-context-rows: N`; REST header or gRPC metadata).

Model calls run on one worker thread (Worker), never on the event loop, on the device the model was loaded
on (`kfts serve --device`: a GPU with cuda). When an algorithm's rows are independent (InceptionTime),
concurrent requests are batched together (up to `max_batch_size` rows, waiting at most `max_batch_wait`
seconds for more), so that under load the network sees large batches. Otherwise (LSTM-AD, whose request is
one long series the estimator windows into batches itself) requests run one after another on that thread.
The worker's queue is bounded and measured in kfts.serving.metrics. Decoding a request and writing its answer
run off the event loop too (kfts.serving.off_loop), its values checked with numpy on the whole array, and a request
holds its rows' share of the memory budget (kfts.serving.admission) before its model call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (InferInput, InferOutput, InferRequest, InferResponse, serialize_byte_tensor,
                                        to_http_parameters)

from kfts.core import csvio
from kfts.jobs.load import load_model
from kfts.algorithms import of
from kfts.core.errors import InputError
from kfts.serving import clip, metrics, off_loop
from kfts.serving.admission import Overloaded, decoded

logger = logging.getLogger("kfts.serving")

CSV = "text/csv"
NUMBERS = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


class KftsModel(Model):
    """A kfts model artifact (any algorithm) served by KServe; what differs per algorithm is its Adapter."""

    def __init__(self, name: str, model_dir: str, *, device: str = "auto", max_batch_size: int = 64,
                 max_batch_wait: float = 0.002, max_queue: int = 1024):
        super().__init__(name, return_response_headers=True)
        self.model_dir = model_dir
        self.device = device
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait
        self.model = None
        self.algorithm = None
        self.adapter = None
        self.worker = Worker(name, max_queue)
        self.batcher = None

    def load(self) -> bool:
        self.model = load_model(self.model_dir, device=self.device)
        self.algorithm = of(self.model)
        self.adapter = self.algorithm.serving(self.model)
        if self.adapter.batchable:
            self.batcher = Batcher(lambda rows: self.adapter.compute(rows, {}), self.worker, self.max_batch_size,
                                   self.max_batch_wait)
        self.worker.executor.submit(self._warm_up).result()  # on the thread that will serve
        self.ready = True
        return self.ready

    def _warm_up(self) -> None:
        start = time.perf_counter()
        self.adapter.warm_up(self.max_batch_size)
        logger.info("%s model loaded from %s on %s and warmed up in %.2fs", self.algorithm.id, self.model_dir,
                    self.model.device_, time.perf_counter() - start)

    # -- metadata (V2 GET /v2/models/NAME) ----------------------------------------------------------------

    def get_input_types(self) -> list[dict]:
        return self.adapter.input_types()

    def get_output_types(self) -> list[dict]:
        return self.adapter.output_types()

    # -- inference -----------------------------------------------------------------------------------------

    async def predict(self, payload, headers=None, response_headers=None):
        with self.worker.in_flight.track_inprogress():
            return await self._predict(payload, headers or {}, {} if response_headers is None else response_headers)

    async def _predict(self, payload, headers: dict, response_headers: dict):
        try:
            if isinstance(payload, InferRequest):
                return await self._predict_v2(payload, headers)
            if isinstance(payload, bytes):  # a V1 body, as kfts's REST route hands it on (server.RestRoutes)
                media_type = headers.get("content-type", "").split(";")[0].strip().lower()
                if media_type == CSV:
                    response_headers["content-type"] = f"{CSV}; charset=utf-8"
                    return await self._predict_csv(payload, headers)
                if media_type not in ("application/json", ""):  # none: JSON, as KServe reads a V1 body
                    raise InvalidInput(f"unsupported content type {clip(repr(media_type))}: send application/json "
                                       f"(V1 or V2) or {CSV}")
            response_headers["content-type"] = "application/json"
            return await self._predict_v1(payload, headers)
        except InputError as e:  # the client's mistake: 400 with the contract's message, never a 500
            raise InvalidInput(str(e)) from None

    async def _predict_csv(self, body: bytes, headers: dict) -> str:
        options = self._options(headers)
        algorithm, m = self.algorithm, self.model
        # read_inference: the same checks and messages as `kfts predict`
        values = await off_loop(algorithm.read_inference, m, csvio.CsvBytes(body))
        await self._hold(values)
        return await self._run(lambda: algorithm.predictions_csv(m, values, **options), len(values))

    async def _predict_v1(self, body: bytes | dict, headers: dict) -> memoryview:
        """The V1 answer's JSON. The body is decoded and checked, and the answer written, off the event loop."""
        options = self._options(headers)
        values = await off_loop(self._v1_values, body)
        await self._hold(values)
        computed = await self._compute(values, options)
        return await off_loop(lambda: _json_predictions(self.adapter.v1(computed, options)))

    def _v1_values(self, body: bytes | dict) -> np.ndarray:
        body = _json(body) if isinstance(body, bytes) else body
        if not isinstance(body, dict) or "instances" not in body:
            raise InvalidInput('expected a JSON object with "instances": a list of rows')
        values = _matrix(body["instances"], "instances", univariate=self.adapter.univariate)
        self.adapter.check(values, "instances")
        return values

    async def _predict_v2(self, request: InferRequest, headers: dict) -> InferResponse:
        if len(request.inputs) != 1:
            raise InvalidInput(f"expected one input tensor, got {len(request.inputs)}")
        parameters = request.parameters or {}
        if not isinstance(parameters, dict):  # gRPC: a protobuf map of InferParameter
            parameters = to_http_parameters(parameters)
        options = self._options(headers, parameters)
        names = [o["name"] for o in self.get_output_types()]
        asked = [o.name for o in request.request_outputs or []]
        for name in asked:
            if name not in names:
                raise InvalidInput(f"outputs: no output {clip(repr(name))}; this model answers {', '.join(names)}")
        values = await off_loop(self._v2_request_values, request)
        await self._hold(values)
        arrays = self.adapter.outputs(await self._compute(values, options), options)
        # no outputs named: every output the model has, as the Open Inference Protocol says
        outputs = _v2_outputs(request, arrays, asked or names)
        response_id = request.id or str(uuid.uuid4())
        if request.from_grpc:
            return InferResponse(response_id=response_id, model_name=self.name, infer_outputs=outputs,
                                 use_binary_outputs=request.use_binary_outputs)
        return RestInferResponse(response_id=response_id, model_name=self.name, infer_outputs=outputs,
                                 binary=_binary_outputs(request, asked or names))

    def _v2_request_values(self, request: InferRequest) -> np.ndarray:
        tensor = request.inputs[0]
        values = _v2_values(tensor, self.adapter.univariate, typed=request.from_grpc)
        self.adapter.check(values, f"input {clip(repr(tensor.name))}")
        return values

    async def _hold(self, values: np.ndarray) -> None:
        """The request's share of the memory budget for its rows' model call and answer (admission.decoded)."""
        await decoded(self.adapter.memory(*values.shape))

    def _options(self, headers: dict, parameters: dict | None = None) -> dict:
        """The request options the adapter knows, from the V2 request parameters, else the headers kfts-NAME."""
        options = {}
        for name, parse in self.adapter.request_options().items():
            header = "kfts-" + name.replace("_", "-")
            if parameters and name in parameters:
                where, value = f"parameter {name!r}", parameters[name]
            elif header in headers:
                where, value = f"header {header}", headers[header]
            else:
                continue
            try:
                options[name] = parse(value)
            except InputError as e:
                raise InputError(e.message, path=where) from None
        return options

    async def _compute(self, values: np.ndarray, options: dict):
        if self.batcher is not None:
            return await self.batcher(values)
        return await self._run(lambda: self.adapter.compute(values, options), rows=len(values))

    async def _run(self, fn, rows: int):
        return await self.worker.call(fn, [self.worker.arrived()], rows)

    def stop(self):
        self.worker.executor.shutdown(wait=False, cancel_futures=True)
        super().stop()


class Worker:
    """The one thread that runs model calls, the bounded queue in front of it, and the metrics of that queue.

    One thread: the model already uses every core (or the GPU) for one call; two calls would only fight. At most
    `max_waiting` requests wait for it or are in its call; one more is refused (Overloaded), so that a burst
    cannot pile up requests, each holding its rows, without end.
    """

    def __init__(self, model_name: str, max_waiting: int = 1024):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfts-model")
        self.max_waiting, self.waiting = max_waiting, 0  # changed on the event loop only
        self.in_flight = metrics.IN_FLIGHT.labels(model_name)
        self.queued = metrics.QUEUED.labels(model_name)
        self.queue_wait = metrics.QUEUE_WAIT.labels(model_name)
        self.batch_rows = metrics.BATCH_ROWS.labels(model_name)
        self.batch_requests = metrics.BATCH_REQUESTS.labels(model_name)
        self.model_call = metrics.MODEL_CALL.labels(model_name)

    def arrived(self) -> float:
        """A request joins the queue: its arrival time, for call(); Overloaded when the queue is full."""
        if self.waiting >= self.max_waiting:
            raise Overloaded(f"{self.waiting} requests are waiting for the model already: retry in "
                             f"{Overloaded.retry_after_s} s")
        self.waiting += 1
        self.queued.inc()
        return time.perf_counter()

    def left(self, n: int) -> None:
        """`n` requests that arrived left before their model call (their clients went away)."""
        self.waiting -= n
        self.queued.dec(n)

    async def call(self, fn, arrivals: list[float], rows: int):
        """fn() on the worker thread, for the requests that arrived at `arrivals` (perf_counter times), which
        together hold `rows` rows."""
        def timed():
            start = time.perf_counter()
            self.queued.dec(len(arrivals))
            for t in arrivals:
                self.queue_wait.observe(start - t)
            try:
                return fn()
            finally:
                self.model_call.observe(time.perf_counter() - start)

        self.batch_rows.observe(rows)
        self.batch_requests.observe(len(arrivals))
        future = self.executor.submit(timed)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # the client went away: the call may not have started, or ever start
            if future.cancel():
                self.queued.dec(len(arrivals))
            raise
        finally:
            self.waiting -= len(arrivals)


class Batcher:
    """Dynamic batching: the rows of concurrent requests go through `fn` together.

    A batch starts with the oldest waiting request and takes more until it holds `max_batch_size` rows or
    `max_wait` seconds have passed; while the model is busy, new requests queue up, so under load batches
    fill without waiting. `fn` maps [n, ...] rows to [n, ...] results and runs on `worker`, whose bound is the
    queue's (Worker.arrived).
    """

    def __init__(self, fn, worker: Worker, max_batch_size: int, max_wait: float):
        self.fn, self.worker = fn, worker
        self.max_batch_size, self.max_wait = max_batch_size, max_wait
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.task is None:  # created on first use: inside the server's event loop
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._work())
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((rows, future, self.worker.arrived()))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch_size:
                if self.queue.empty():
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                else:
                    item = self.queue.get_nowait()
                batch.append(item)
                size += len(item[0])
            self.worker.left(sum(item[1].done() for item in batch))  # requests whose client went away
            batch = [item for item in batch if not item[1].done()]
            if not batch:
                continue
            rows = np.concatenate([r for r, _, _ in batch]) if len(batch) > 1 else batch[0][0]
            try:
                results = await self.worker.call(lambda: self.fn(rows), [t for _, _, t in batch], len(rows))
            except Exception as e:  # noqa: BLE001 - handed to every waiting request, the worker goes on
                for _, f, _ in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            start = 0
            for r, f, _ in batch:
                if not f.done():
                    f.set_result(results[start:start + len(r)])
                start += len(r)


# -- request decoding and answers ---------------------------------------------------------------------------------
# These run off the event loop (kfts.serving.off_loop), and check a request's values with numpy on the whole array:
# a body holds millions of values.

def _json(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"Unrecognized request format: {e}") from None


def _matrix(rows, where: str, univariate: bool = False) -> np.ndarray:
    """A JSON list of rows as float32 [rows, columns]; a mistake names the row and column, as csvio does."""
    if not isinstance(rows, list):
        raise InvalidInput(f"{where}: expected a list of rows, got {type(rows).__name__}")
    if not rows:
        raise InvalidInput(f"{where}: the list is empty")
    kinds = _types(rows, len(rows))
    if univariate and not (kinds == list).any():  # bare numbers, one per row: a column
        return _column(rows, kinds, where)
    if univariate:  # rows and bare numbers mixed
        rows = [r if type(r) is list else [r] for r in rows]
        kinds = _types(rows, len(rows))
    not_row = np.flatnonzero(kinds != list)
    if not_row.size:
        r = int(not_row[0])
        raise InputError(f"{_show(rows[r])} is not a row: each row is a list of numbers", path=where, row=r + 1)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ragged = np.flatnonzero(lengths != lengths[0])
    if ragged.size:
        r = int(ragged[0])
        raise InputError(f"has {lengths[r]} values, the rows above have {lengths[0]}", path=where, row=r + 1)
    if lengths[0] == 0:
        raise InvalidInput(f"{where}: the rows are empty")
    # numpy alone would quietly read true as 1 and "4" as 4.0: every value's type is checked first
    bad = _first_not_of(_types(itertools.chain.from_iterable(rows), int(lengths.sum())), (int, float))
    if bad is not None:
        r, c = divmod(bad, int(lengths[0]))
        raise InputError(f"{_show(rows[r][c])} is not a number", path=where, row=r + 1, column=c + 1)
    with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
        values = np.array(rows, dtype=np.float32)
    return _finite(values, where, rows)


def _column(values: list, kinds: np.ndarray, where: str) -> np.ndarray:
    """A JSON list of bare numbers as float32 [rows, 1], without a list per row (64 bytes for a 2-byte value)."""
    bad = _first_not_of(kinds, (int, float))
    if bad is not None:
        raise InputError(f"{_show(values[bad])} is not a number", path=where, row=bad + 1, column=1)
    with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
        column = np.array(values, dtype=np.float32)[:, None]
    return _finite(column, where, np.asarray(values, dtype=object)[:, None])


def _types(items, count: int = -1) -> np.ndarray:
    """The type of each item, as an object array (map and fromiter loop in C)."""
    return np.fromiter(map(type, items), dtype=object, count=count)


def _first_not_of(types: np.ndarray, kinds: tuple) -> int | None:
    """The index of the first type that is not one of `kinds` (exactly: bool is not int), None if all are."""
    ok = np.zeros(len(types), dtype=bool)
    for kind in kinds:
        ok |= types == kind
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else None


def _show(value) -> str:
    """A client's value in a message, cut to a sane length (a string may be as long as the body)."""
    return "null" if value is None else clip(repr(value))


def _finite(values: np.ndarray, where: str, sent: list | None = None) -> np.ndarray:
    """values, refused where one is not finite. sent: the rows as the client sent them (V1's JSON lists, V2's
    array in its datatype), to show a number beyond float32 (1e39) as itself, not as the infinity it became."""
    if not np.isfinite(values).all():
        row = int(np.argmin(np.isfinite(values).all(axis=1)))
        col = int(np.argmin(np.isfinite(values[row])))
        value = sent[row][col] if sent is not None else values[row, col]
        reason = ("is too large: values must fit in float32 (at most 3.4028235e38 in magnitude)"
                  if np.isfinite(value) else "is not allowed: values must be finite numbers")
        raise InputError(f"{value} {reason}", path=where, row=row + 1, column=col + 1)
    return values


def _v2_values(tensor: InferInput, univariate: bool, typed: bool = False) -> np.ndarray:
    """The request's V2 tensor as float32 [rows, columns], whichever encoding and numeric datatype it came in.
    typed: gRPC's typed contents, whose values protobuf has typed already."""
    where = f"input {clip(repr(tensor.name))}"
    if tensor.datatype not in NUMBERS:
        raise InvalidInput(f"{where}: datatype {clip(str(tensor.datatype))}: send numbers (FP32, FP64, FP16 or an "
                           "integer type)")
    if isinstance(tensor.data, list) and not typed:  # JSON data
        _check_numbers(tensor.data, tensor.datatype, tensor.shape, where)
    try:
        data = tensor.as_numpy()  # JSON data, typed gRPC contents or raw bytes, checked against the shape
    except (ValueError, TypeError, OverflowError) as e:
        hint = (" FP16 travels only as binary data: binary_data_size over REST, raw_input_contents over gRPC"
                if tensor.datatype == "FP16" else "")
        raise InvalidInput(f"{where}: the data are not {clip(str(tensor.shape))} {tensor.datatype} numbers "
                           f"({clip(str(e))}).{hint}") from None
    if data.ndim == 1 and univariate:
        data = data[:, None]
    if data.ndim != 2:
        raise InvalidInput(f"{where}: expected a 2-D tensor, got shape {list(data.shape)}")
    if data.size == 0:
        raise InvalidInput(f"{where}: the tensor is empty")
    with np.errstate(over="ignore"):  # FP64 beyond float32: inf, refused by _finite
        return _finite(data.astype(np.float32, copy=False), where, data)


def _check_numbers(data: list, datatype: str, shape: list, where: str) -> None:
    """JSON data, flat or nested, holds numbers of `datatype`: numpy would quietly read "1.0" and true as 1.0,
    and 0.5 as INT32 0 (V1 rows get the same exact check, in _matrix). A mistake names its row and column."""
    kinds, kind = ((int,), "an integer") if datatype.startswith(("INT", "UINT")) else ((int, float), "a number")
    try:
        items = np.array(data, dtype=object).ravel()  # nested lists flattened in C; ragged ones refused
    except ValueError as e:
        raise InvalidInput(f"{where}: the data are not {clip(str(shape))} {datatype} numbers ({e})") from None
    bad = _first_not_of(_types(items, items.size), kinds)
    if bad is not None:
        columns = shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 else 1
        raise InputError(f"{_show(items[bad])} is not {kind}, as datatype {datatype} needs", path=where,
                         row=bad // columns + 1, column=bad % columns + 1)


def _v2_outputs(request: InferRequest, arrays: dict[str, np.ndarray], names: list[str]) -> list[InferOutput]:
    """The answer's tensors `names`: over gRPC raw_output_contents to raw_input_contents and typed contents
    otherwise (KServe's to_grpc cannot encode numpy data itself); over REST numpy data, which
    RestInferResponse.to_rest writes as JSON or binary data."""
    outputs = []
    for name in names:
        data = arrays[name]
        output = InferOutput(name=name, shape=list(data.shape), datatype="BYTES" if data.dtype == object else "FP32")
        if request.from_grpc:
            output.set_data_from_numpy(data, binary_data=request.use_binary_outputs)
        else:
            output.data = data
        outputs.append(output)
    return outputs


def _binary_outputs(request: InferRequest, names: list[str]) -> dict[str, bool]:
    """REST: which outputs are answered as binary data: an output's `binary_data` parameter, else the
    request's `binary_data_output` (as the binary tensor extension says)."""
    binary = {name: bool(request.use_binary_outputs) for name in names}
    for o in request.request_outputs or []:
        if o.binary_data is not None:
            binary[o.name] = bool(o.binary_data)
    return binary


class RestInferResponse(InferResponse):
    """A V2 answer to a REST request, whose to_rest() orjson writes from the numpy outputs: KServe's turns them
    into Python lists first (tens of bytes per value) and leaves the JSON to FastAPI, on the event loop."""

    def __init__(self, *, binary: dict[str, bool], **kwargs):
        super().__init__(**kwargs)
        self.binary = binary

    def to_rest(self) -> tuple[bytes, int | None]:
        """(body, length of its JSON part when binary data follow it, else None)."""
        tensors, raw = [], []
        for output in self.outputs:
            tensor = {"name": output.name, "shape": output.shape, "datatype": output.datatype}
            data = output.data
            if self.binary[output.name]:
                raw.append(serialize_byte_tensor(data).item() if data.dtype == object else data.tobytes())
                tensor["parameters"] = {"binary_data_size": len(raw[-1])}
            else:
                tensor["data"] = data.tolist() if data.dtype == object else data  # text, else numpy for orjson
            tensors.append(tensor)
        head = orjson.dumps({"id": self.id, "model_name": self.model_name, "model_version": self.model_version,
                             "outputs": tensors}, option=orjson.OPT_SERIALIZE_NUMPY)  # NaN as null
        return (b"".join([head, *raw]), len(head)) if raw else (head, None)


def _json_predictions(chunks) -> memoryview:
    """{"predictions": [...]} from the adapter's V1 predictions, written a chunk at a time: a whole answer as
    Python objects would take many times its JSON (an LSTM-AD time step is a dict with a list)."""
    out = bytearray(b'{"predictions":[')
    for chunk in chunks:
        if chunk:
            out += orjson.dumps(chunk, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1] + b","
    out[-1:] = b"]}" if out.endswith(b",") else b"[]}"
    return memoryview(out)
