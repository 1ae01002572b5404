"""The KServe predictor: one kserve.Model that serves any kfts model artifact.

KServe does the protocols (V1 and Open Inference Protocol V2 over REST and gRPC), health, readiness and
Prometheus metrics; this class decodes a request into a float32 [rows, columns] array (kfts.serving.decoding:
V1 JSON, V2 and CSV), runs the algorithm's Adapter on it on the model's worker thread (kfts.serving.batching,
batching concurrent requests where the rows are independent) and encodes the answer as it was asked. A
request holds its rows' share of the memory budget (kfts.serving.admission) before its model call.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse

from kfts.algorithms import of
from kfts.algorithms.adapter import Adapter
from kfts.algorithms.base import Algorithm
from kfts.core import csvio
from kfts.core.errors import InputError
from kfts.jobs.load import load_model
from kfts.serving import clip, decoding, off_loop
from kfts.serving.admission import decoded
from kfts.serving.batching import Batcher, Worker

logger = logging.getLogger("kfts.serving")


class KftsModel(Model):
    """A kfts model artifact (any algorithm) served by KServe; what differs per algorithm is its Adapter."""

    # set by load(), which KServe calls before the model takes requests
    model: Any
    algorithm: Algorithm
    adapter: Adapter
    batcher: Batcher | None = None

    def __init__(
        self,
        name: str,
        model_dir: str,
        *,
        device: str = "auto",
        max_batch_size: int = 64,
        max_batch_wait: float = 0.002,
        max_queue: int = 1024,
    ):
        super().__init__(name, return_response_headers=True)
        self.model_dir = model_dir
        self.device = device
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait
        self.worker = Worker(name, max_queue)

    def load(self) -> bool:
        self.model = load_model(self.model_dir, device=self.device)
        self.algorithm = of(self.model)
        self.adapter = self.algorithm.serving(self.model)
        if self.adapter.batchable:
            self.batcher = Batcher(
                lambda rows: self.adapter.compute(rows, {}), self.worker, self.max_batch_size, self.max_batch_wait
            )
        self.worker.executor.submit(self._warm_up).result()  # on the thread that will serve
        self.ready = True
        return self.ready

    def _warm_up(self) -> None:
        start = time.perf_counter()
        self.adapter.warm_up(self.max_batch_size)
        logger.info(
            "%s model loaded from %s on %s and warmed up in %.2fs",
            self.algorithm.id,
            self.model_dir,
            self.model.device_,
            time.perf_counter() - start,
        )

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
                if media_type == decoding.CSV:
                    response_headers["content-type"] = f"{decoding.CSV}; charset=utf-8"
                    return await self._predict_csv(payload, headers)
                if media_type not in ("application/json", ""):  # none: JSON, as KServe reads a V1 body
                    raise InvalidInput(
                        f"unsupported content type {clip(repr(media_type))}: send application/json "
                        f"(V1 or V2) or {decoding.CSV}"
                    )
            response_headers["content-type"] = "application/json"
            return await self._predict_v1(payload, headers)
        except InputError as e:  # the client's mistake: 400 with the contract's message, never a 500
            raise InvalidInput(str(e)) from None

    async def _predict_csv(self, body: bytes, headers: dict) -> str:
        options = decoding.options(self.adapter, headers)
        algorithm, m = self.algorithm, self.model
        # read_inference: the same checks and messages as `kfts predict`
        values = await off_loop(algorithm.read_inference, m, csvio.CsvBytes(body))
        await self._hold(values)
        return await self._run(lambda: algorithm.predictions_csv(m, values, **options), len(values))

    async def _predict_v1(self, body: bytes | dict, headers: dict) -> memoryview:
        """The V1 answer's JSON. The body is decoded and checked, and the answer written, off the event loop."""
        options = decoding.options(self.adapter, headers)
        values = await off_loop(decoding.v1_values, body, self.adapter)
        await self._hold(values)
        computed = await self._compute(values, options)
        return await off_loop(lambda: decoding.v1_answer(self.adapter.v1(computed, options)))

    async def _predict_v2(self, request: InferRequest, headers: dict) -> InferResponse:
        options, names = decoding.v2_head(request, self.adapter, headers)
        values = await off_loop(decoding.v2_values, request, self.adapter)
        await self._hold(values)
        arrays = self.adapter.outputs(await self._compute(values, options), options)
        return decoding.v2_answer(request, arrays, names, self.name)

    async def _hold(self, values: np.ndarray) -> None:
        """The request's share of the memory budget for its rows' model call and answer (admission.decoded)."""
        await decoded(self.adapter.memory(*values.shape))

    async def _compute(self, values: np.ndarray, options: dict):
        if self.batcher is not None:
            return await self.batcher(values)
        return await self._run(lambda: self.adapter.compute(values, options), rows=len(values))

    async def _run(self, fn, rows: int):
        return await self.worker.call(fn, [self.worker.arrived()], rows)

    def stop(self):
        self.worker.executor.shutdown(wait=False, cancel_futures=True)
        super().stop()
