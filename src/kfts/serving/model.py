"""The KServe predictor: one kserve.Model that serves any kfts model artifact.

KServe does the protocols (V1 and Open Inference Protocol V2 over REST and gRPC), health, readiness and
Prometheus metrics; this class turns a decoded request into arrays, runs the estimator and builds the answer.

Requests (NAME is the model name, `--model-name`), for any algorithm:

- V1 `POST /v1/models/NAME:predict` with `{"instances": [rows]}` -> `{"predictions": [...]}`.
- V2 `POST /v2/models/NAME/infer` (or gRPC ModelInfer): one numeric tensor (FP32, FP64, FP16 or an integer
  type) of rows, in any encoding of the protocol: JSON `data` or the binary tensor extension
  (`binary_data_size`) over REST, typed `contents` or `raw_input_contents` over gRPC. The request's `outputs`
  pick outputs by name. Answers come back as they were asked (_v2_outputs): over gRPC raw to raw inputs and
  typed to typed ones; over REST JSON, or binary with `binary_data_output` or an output's `binary_data`.
- `text/csv` body on the V1 predict URL: the inference file of docs/FORMATS.md, answered with exactly the
  bytes of `kfts predict` (the algorithm's predictions_csv), as `text/csv`.

What a row is, the outputs and the V1 answer are the algorithm's (its Adapter, kfts/algorithms/<name>/
serving.py: InceptionTime a series per row and `label` [+ `probabilities`, `classes`]; LSTM-AD a time step
per row and `score`, `reconstruction` [+ `anomaly`]). Request options (InceptionTime `probabilities`, LSTM-AD
`flag` and `context_rows`) come from the V2 request parameters (`{"parameters": {"probabilities": true}}`) or
from the headers `kfts-NAME` (`kfts-context-rows: N`; REST header or gRPC metadata).

Model calls run on one worker thread (Worker), never on the event loop, on the device the model was loaded
on (`kfts serve --device`: a GPU with cuda). When an algorithm's rows are independent (InceptionTime),
concurrent requests are batched together (up to `max_batch_size` rows, waiting at most `max_batch_wait`
seconds for more), so that under load the network sees large batches. Otherwise (LSTM-AD, whose request is
one long series the estimator windows into batches itself) requests run one after another on that thread.
The worker's queue is measured in kfts.serving.metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput,
                                        to_http_parameters)

from kfts import csvio
from kfts.algorithms import load_model, of
from kfts.errors import InputError
from kfts.serving import metrics

logger = logging.getLogger("kfts.serving")

CSV = "text/csv"
NUMBERS = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


class KftsModel(Model):
    """A kfts model artifact (any algorithm) served by KServe; what differs per algorithm is its Adapter."""

    def __init__(self, name: str, model_dir: str, *, device: str = "auto", max_batch_size: int = 64,
                 max_batch_wait: float = 0.002):
        super().__init__(name, return_response_headers=True)
        self.model_dir = model_dir
        self.device = device
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait
        self.model = None
        self.algorithm = None
        self.adapter = None
        self.worker = Worker(name)
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
            return await self._predict(payload, headers or {}, response_headers)

    async def _predict(self, payload, headers: dict, response_headers: dict):
        try:
            if isinstance(payload, InferRequest):
                return await self._predict_v2(payload, headers)
            if isinstance(payload, bytes):  # KServe passes bodies that are not JSON through undecoded
                media_type = headers.get("content-type", "").split(";")[0].strip().lower()
                if media_type == CSV:
                    response_headers["content-type"] = f"{CSV}; charset=utf-8"
                    return await self._predict_csv(payload, headers)
                if media_type != "application/json":
                    raise InvalidInput(f"unsupported content type {media_type!r}: send application/json "
                                       f"(V1 or V2) or {CSV}")
                payload = _json(payload)
            return await self._predict_v1(payload, headers)
        except InputError as e:  # the client's mistake: 400 with the contract's message, never a 500
            raise InvalidInput(str(e)) from None

    async def _predict_csv(self, body: bytes, headers: dict) -> str:
        options = self._options(headers)
        algorithm, m = self.algorithm, self.model
        # parsed off the event loop too; read_inference: the same checks and messages as `kfts predict`
        rows = body.count(b"\n") + (not body.endswith(b"\n"))
        return await self._run(lambda: algorithm.predictions_csv(m, algorithm.read_inference(m, csvio.CsvBytes(body)),
                                                                 **options), rows)

    async def _predict_v1(self, body, headers: dict) -> dict:
        if not isinstance(body, dict) or "instances" not in body:
            raise InvalidInput('expected a JSON object with "instances": a list of rows')
        values = _matrix(body["instances"], "instances", univariate=self.adapter.univariate)
        self.adapter.check(values, "instances")
        options = self._options(headers)
        return {"predictions": self.adapter.v1(await self._compute(values, options), options)}

    async def _predict_v2(self, request: InferRequest, headers: dict) -> InferResponse:
        if len(request.inputs) != 1:
            raise InvalidInput(f"expected one input tensor, got {len(request.inputs)}")
        where = f"input {request.inputs[0].name!r}"
        values = _v2_values(request.inputs[0], self.adapter.univariate)
        self.adapter.check(values, where)
        parameters = request.parameters or {}
        if not isinstance(parameters, dict):  # gRPC: a protobuf map of InferParameter
            parameters = to_http_parameters(parameters)
        options = self._options(headers, parameters)
        names = [o["name"] for o in self.get_output_types()]
        asked = [o.name for o in request.request_outputs or []]
        for name in asked:
            if name not in names:
                raise InvalidInput(f"outputs: no output {name!r}; this model answers {', '.join(names)}")
        arrays = self.adapter.outputs(await self._compute(values, options), options)
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=_v2_outputs(request, arrays, asked or self.adapter.default_outputs(options)),
                             use_binary_outputs=request.use_binary_outputs,
                             requested_outputs=_requested_outputs(request))

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
    """The one thread that runs model calls, and the metrics of the queue in front of it.

    One thread: the model already uses every core (or the GPU) for one call; two calls would only fight.
    """

    def __init__(self, model_name: str):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfts-model")
        self.in_flight = metrics.IN_FLIGHT.labels(model_name)
        self.queued = metrics.QUEUED.labels(model_name)
        self.queue_wait = metrics.QUEUE_WAIT.labels(model_name)
        self.batch_rows = metrics.BATCH_ROWS.labels(model_name)
        self.batch_requests = metrics.BATCH_REQUESTS.labels(model_name)
        self.model_call = metrics.MODEL_CALL.labels(model_name)

    def arrived(self) -> float:
        """A request joins the queue: its arrival time, for call()."""
        self.queued.inc()
        return time.perf_counter()

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


class Batcher:
    """Dynamic batching: the rows of concurrent requests go through `fn` together.

    A batch starts with the oldest waiting request and takes more until it holds `max_batch_size` rows or
    `max_wait` seconds have passed; while the model is busy, new requests queue up, so under load batches
    fill without waiting. `fn` maps [n, ...] rows to [n, ...] results and runs on `worker`.
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
            left = [item for item in batch if item[1].done()]  # requests whose client went away
            self.worker.queued.dec(len(left))
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


# -- request decoding -------------------------------------------------------------------------------------------

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
    if univariate:
        rows = [r if isinstance(r, list) else [r] for r in rows]
    # An exact pass in Python (numpy would quietly turn true into 1 and "4" into 4.0): cheap next to the model.
    width = len(rows[0]) if isinstance(rows[0], list) else None
    for r, row in enumerate(rows, start=1):
        if not isinstance(row, list):
            raise InputError(f"{_show(row)} is not a row: each row is a list of numbers", path=where, row=r)
        if len(row) != width:
            raise InputError(f"has {len(row)} values, the rows above have {width}", path=where, row=r)
        for c, value in enumerate(row, start=1):
            if type(value) not in (int, float):
                raise InputError(f"{_show(value)} is not a number", path=where, row=r, column=c)
    with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
        values = np.asarray(rows, dtype=np.float32)
    if values.shape[1] == 0:
        raise InvalidInput(f"{where}: the rows are empty")
    return _finite(values, where, rows)


def _show(value) -> str:
    return "null" if value is None else repr(value)


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


def _v2_values(tensor: InferInput, univariate: bool) -> np.ndarray:
    """The request's V2 tensor as float32 [rows, columns], whichever encoding and numeric datatype it came in."""
    where = f"input {tensor.name!r}"
    if tensor.datatype not in NUMBERS:
        raise InvalidInput(f"{where}: datatype {tensor.datatype}: send numbers (FP32, FP64, FP16 or an integer "
                           "type)")
    if isinstance(tensor.data, list):  # JSON data (or typed gRPC contents, always of their type)
        _check_numbers(tensor.data, tensor.datatype, tensor.shape, where)
    try:
        data = tensor.as_numpy()  # JSON data, typed gRPC contents or raw bytes, checked against the shape
    except (ValueError, TypeError, OverflowError) as e:
        hint = (" FP16 travels only as binary data: binary_data_size over REST, raw_input_contents over gRPC"
                if tensor.datatype == "FP16" else "")
        raise InvalidInput(f"{where}: the data are not {tensor.shape} {tensor.datatype} numbers ({e}).{hint}") \
            from None
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
    columns = shape[1] if len(shape) == 2 and shape[1] > 0 else 1
    for i, value in enumerate(_flattened(data)):
        if type(value) not in kinds:
            raise InputError(f"{_show(value)} is not {kind}, as datatype {datatype} needs", path=where,
                             row=i // columns + 1, column=i % columns + 1)


def _flattened(data: list):
    """The items of nested lists in row-major order, without recursion (a body may nest deeply)."""
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def _v2_outputs(request: InferRequest, arrays: dict[str, np.ndarray], names: list[str]) -> list[InferOutput]:
    """The answer's tensors `names` (those the request's `outputs` name, else the default ones), encoded as the request
    was: over gRPC raw_output_contents to raw_input_contents and typed contents otherwise (KServe's to_grpc
    cannot encode numpy data itself); over REST numpy data, which KServe's InferResponse.to_rest writes as JSON
    or as binary data, per output, as _requested_outputs says."""
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


def _requested_outputs(request: InferRequest) -> list[RequestedOutput] | None:
    """REST: the requested outputs, each with its `binary_data` parameter defaulting to the request's
    `binary_data_output` (as the binary tensor extension says; KServe would answer them in JSON)."""
    if request.from_grpc or not request.request_outputs:
        return None
    binary = bool(request.use_binary_outputs)
    return [RequestedOutput(o.name, {**(o.parameters or {}),
                                     "binary_data": binary if o.binary_data is None else o.binary_data})
            for o in request.request_outputs]
