"""The KServe predictor: one kserve.Model that serves any kfts model artifact.

KServe does the protocols (V1 and Open Inference Protocol V2 over REST and gRPC), health, readiness and
Prometheus metrics; this class turns a decoded request into arrays, runs the estimator and builds the answer.

Requests (NAME is the model name, `--model-name`):

- V1 `POST /v1/models/NAME:predict` with `{"instances": [...]}`. InceptionTime: one series per instance ->
  `{"predictions": [label, ...]}`, or with probabilities `[{"label": ..., "probabilities": {class: p}}]`.
  LSTM-AD: one time step per instance (all instances are one multivariate series, a single number per step
  for one series) -> `{"predictions": [{"score", "reconstruction"[, "anomaly"]}, ...]}`, `null` for the
  first sequence; "anomaly" (0/1) when the artifact has a threshold.
- V2 `POST /v2/models/NAME/infer` (or gRPC ModelInfer): one numeric tensor (FP32, FP64, FP16 or an integer
  type), [series, length] or [time steps, series], in any encoding of the protocol: JSON `data` or the binary
  tensor extension (`binary_data_size`) over REST, typed `contents` or `raw_input_contents` over gRPC.
  Outputs: InceptionTime `label` (BYTES) [+ `probabilities` FP32 and `classes` BYTES]; LSTM-AD `score` [T],
  `reconstruction` [T, d] (FP32, NaN for the first sequence) [+ `anomaly` FP32 1/0]. The request's `outputs`
  pick outputs by name. Answers come back as they were asked (_v2_outputs): over gRPC raw to raw inputs and
  typed to typed ones; over REST JSON, or binary with `binary_data_output` or an output's `binary_data`.
- `text/csv` body on the V1 predict URL: the SPEC inference file, answered with exactly the bytes of
  `kfts predict` (the estimator's predictions_csv), as `text/csv`.

Options: probabilities (InceptionTime) and flag (LSTM-AD CSV column) come from the V2 request parameters
(`{"parameters": {"probabilities": true}}`) or from the headers `kfts-probabilities: true` /
`kfts-flag: true` (REST header or gRPC metadata). LSTM-AD: `context_rows` N (V2 parameter, or the header
`kfts-context-rows: N`) marks the first N rows as context only: the answer covers the rows after them.

Model calls run on one worker thread (Worker), never on the event loop, on the device the model was loaded
on (`kfts serve --device`: a GPU with cuda). Concurrent InceptionTime requests are batched together (up to
`max_batch_size` series, waiting at most `max_batch_wait` seconds for more), so that under load the network
sees large batches. An LSTM-AD request is already one long series that the estimator windows into batches
itself; those requests run one after another on the same thread. The worker's queue is measured in
kfts.serving.metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
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
from kfts.algorithms import load_model
from kfts.errors import InputError
from kfts.serving import metrics

logger = logging.getLogger("kfts.serving")

CSV = "text/csv"
TRUE = {"1", "true", "yes", "on"}
NUMBERS = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


class KftsModel(Model):
    """A kfts model artifact (any algorithm) served by KServe."""

    def __init__(self, name: str, model_dir: str, *, device: str = "auto", max_batch_size: int = 64,
                 max_batch_wait: float = 0.002):
        super().__init__(name, return_response_headers=True)
        self.model_dir = model_dir
        self.device = device
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait
        self.model = None
        self.worker = Worker(name)
        self.batcher = None

    def load(self) -> bool:
        self.model = load_model(self.model_dir, device=self.device)
        if self.model.algorithm == "inception-time":
            self.batcher = Batcher(self.model.predict_proba, self.worker, self.max_batch_size,
                                   self.max_batch_wait)
        self.worker.executor.submit(self._warm_up).result()  # on the thread that will serve
        self.ready = True
        return self.ready

    def _warm_up(self) -> None:
        """Run the model once at the sizes it will see, so that the first request is not slow."""
        start = time.perf_counter()
        m = self.model
        if m.algorithm == "inception-time":
            for n in sorted({1, self.max_batch_size}):
                m.predict_proba(np.zeros((n, m.length), dtype=np.float32))
        else:
            m.score(np.zeros((2 * m.first_scored + 1, m.n_series), dtype=np.float32))
        logger.info("%s model loaded from %s on %s and warmed up in %.2fs", m.algorithm, self.model_dir, m.device,
                    time.perf_counter() - start)

    # -- metadata (V2 GET /v2/models/NAME) ----------------------------------------------------------------

    def get_input_types(self) -> list[dict]:
        m = self.model
        if m.algorithm == "inception-time":
            return [{"name": "input-0", "datatype": "FP32", "shape": [-1, m.length]}]
        return [{"name": "input-0", "datatype": "FP32", "shape": [-1, m.n_series]}]

    def get_output_types(self) -> list[dict]:
        m = self.model
        if m.algorithm == "inception-time":
            return [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(m.classes)]},
                    {"name": "classes", "datatype": "BYTES", "shape": [len(m.classes)]}]
        outputs = [{"name": "score", "datatype": "FP32", "shape": [-1]},
                   {"name": "reconstruction", "datatype": "FP32", "shape": [-1, m.n_series]}]
        if m.threshold is not None:
            outputs.append({"name": "anomaly", "datatype": "FP32", "shape": [-1]})
        return outputs

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
        m = self.model
        if m.algorithm == "inception-time":
            options = {"probabilities": _option("probabilities", headers)}
        else:
            options = {"flag": _option("flag", headers), "context_rows": _context_rows(headers)}
            if options["flag"] and m.threshold is None:
                raise InvalidInput("kfts-flag: this model has no anomaly threshold to flag with")
        # parsed off the event loop too; read_inference: the same checks and messages as `kfts predict`
        rows = body.count(b"\n") + (not body.endswith(b"\n"))
        return await self._run(lambda: m.predictions_csv(m.read_inference(csvio.CsvBytes(body)), **options), rows)

    async def _predict_v1(self, body, headers: dict) -> dict:
        if not isinstance(body, dict) or "instances" not in body:
            raise InvalidInput('expected a JSON object with "instances": a list of rows')
        values = self._check(_matrix(body["instances"], "instances", univariate=self._univariate), "instances")
        if self.model.algorithm == "inception-time":
            proba = await self.batcher(values)
            labels = self.model.classes[proba.argmax(axis=1)]
            if not _option("probabilities", headers):
                return {"predictions": labels.tolist()}
            return {"predictions": [{"label": label, "probabilities": dict(zip(self.model.classes.tolist(),
                                                                               row.tolist()))}
                                    for label, row in zip(labels.tolist(), proba)]}
        scores, reconstructions, flags = await self._score(values, _context_rows(headers))
        predictions = []
        for i in range(len(scores)):
            if math.isnan(scores[i]):
                row = {"score": None, "reconstruction": None}
                if flags is not None:
                    row["anomaly"] = None
            else:
                row = {"score": float(scores[i]), "reconstruction": reconstructions[i].tolist()}
                if flags is not None:
                    row["anomaly"] = int(flags[i])
            predictions.append(row)
        return {"predictions": predictions}

    async def _predict_v2(self, request: InferRequest, headers: dict) -> InferResponse:
        if len(request.inputs) != 1:
            raise InvalidInput(f"expected one input tensor, got {len(request.inputs)}")
        values = self._check(_v2_values(request.inputs[0], self._univariate), f"input {request.inputs[0].name!r}")
        parameters = request.parameters or {}
        if not isinstance(parameters, dict):  # gRPC: a protobuf map of InferParameter
            parameters = to_http_parameters(parameters)
        names = [o["name"] for o in self.get_output_types()]
        asked = [o.name for o in request.request_outputs or []]
        for name in asked:
            if name not in names:
                raise InvalidInput(f"outputs: no output {name!r}; this model answers {', '.join(names)}")
        if self.model.algorithm == "inception-time":
            probabilities = _option("probabilities", headers, parameters) or bool({"probabilities", "classes"}
                                                                                  & set(asked))
            arrays = await self._infer_inception_time(values, probabilities)
        else:
            arrays = await self._infer_lstm_ad(values, _context_rows(headers, parameters))
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=_v2_outputs(request, arrays),
                             use_binary_outputs=request.use_binary_outputs,
                             requested_outputs=_requested_outputs(request))

    async def _infer_inception_time(self, values: np.ndarray, probabilities: bool) -> dict[str, np.ndarray]:
        """V2 outputs by name: label [n] (+ probabilities [n, classes] and classes [classes])."""
        proba = await self.batcher(values)
        labels = self.model.classes[proba.argmax(axis=1)]
        arrays = {"label": labels.astype(object)}
        if probabilities:
            arrays["probabilities"] = proba.astype(np.float32)
            arrays["classes"] = self.model.classes.astype(object)
        return arrays

    async def _infer_lstm_ad(self, values: np.ndarray, context_rows: int) -> dict[str, np.ndarray]:
        """V2 outputs by name: score [T], reconstruction [T, d] (+ anomaly [T] 1/0), NaN for the first sequence."""
        scores, reconstructions, flags = await self._score(values, context_rows)
        arrays = {"score": scores.astype(np.float32), "reconstruction": reconstructions.astype(np.float32)}
        if flags is not None:
            arrays["anomaly"] = np.where(np.isnan(scores), np.nan, flags).astype(np.float32)
        return arrays

    @property
    def _univariate(self) -> bool:
        """LSTM-AD on one series: a time step may be a single number instead of a list of one."""
        return self.model.algorithm == "lstm-ad" and self.model.n_series == 1

    def _check(self, values: np.ndarray, where: str) -> np.ndarray:
        """The model's shape rules, checked per request so that one bad request cannot spoil a batch."""
        m = self.model
        if m.algorithm == "inception-time" and values.shape[1] != m.length:
            raise InputError(f"rows have {values.shape[1]} time steps, the model was trained on {m.length}",
                             path=where, row=1)
        if m.algorithm == "lstm-ad" and values.shape[1] != m.n_series:
            raise InputError(f"rows have {values.shape[1]} values (series), the model was trained on "
                             f"{m.n_series}", path=where, row=1)
        return values

    async def _score(self, values: np.ndarray, context_rows: int = 0):
        """LSTM-AD: (scores [T], reconstructions [T, d], 0/1 flags or None without a threshold), for the rows
        after the first `context_rows` (kfts.lstm_ad.LstmAD.score)."""
        m = self.model
        scores, reconstructions = await self._run(lambda: m.score(values, context_rows), rows=len(values))
        flags = None
        if m.threshold is not None:
            with np.errstate(invalid="ignore"):
                flags = (scores < m.threshold).astype(np.int8)  # lower score = more anomalous
        return scores, reconstructions, flags

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


def _context_rows(headers: dict, parameters: dict | None = None) -> int:
    """LSTM-AD: how many first rows are context only, not answered (README "LSTM-AD: seed or paper scoring"):
    the V2 request parameter `context_rows`, else the header `kfts-context-rows`; 0 without either."""
    from kfts.lstm_ad import context_rows
    if parameters and "context_rows" in parameters:
        return context_rows(parameters["context_rows"])
    return context_rows(headers.get("kfts-context-rows", 0))


def _option(name: str, headers: dict, parameters: dict | None = None) -> bool:
    """An on/off request option: a V2 request parameter, else the header `kfts-<name>`."""
    if parameters and name in parameters:
        value = parameters[name]
        return value is True or str(value).lower() in TRUE
    return headers.get(f"kfts-{name}", "").strip().lower() in TRUE


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
    return _finite(values, where)


def _show(value) -> str:
    return "null" if value is None else repr(value)


def _finite(values: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(values).all():
        row = int(np.argmin(np.isfinite(values).all(axis=1)))
        col = int(np.argmin(np.isfinite(values[row])))
        raise InputError(f"{values[row, col]} is not allowed: values must be finite numbers", path=where,
                         row=row + 1, column=col + 1)
    return values


def _v2_values(tensor: InferInput, univariate: bool) -> np.ndarray:
    """The request's V2 tensor as float32 [rows, columns], whichever encoding and numeric datatype it came in."""
    where = f"input {tensor.name!r}"
    if tensor.datatype not in NUMBERS:
        raise InvalidInput(f"{where}: datatype {tensor.datatype}: send numbers (FP32, FP64, FP16 or an integer "
                           "type)")
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
        return _finite(data.astype(np.float32, copy=False), where)


def _v2_outputs(request: InferRequest, arrays: dict[str, np.ndarray]) -> list[InferOutput]:
    """The answer's tensors (those the request's `outputs` name, else all of `arrays`), encoded as the request
    was: over gRPC raw_output_contents to raw_input_contents and typed contents otherwise (KServe's to_grpc
    cannot encode numpy data itself); over REST numpy data, which KServe's InferResponse.to_rest writes as JSON
    or as binary data, per output, as _requested_outputs says."""
    outputs = []
    for name in [o.name for o in request.request_outputs or []] or arrays:
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
