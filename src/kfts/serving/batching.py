"""The predictor's model calls: one worker thread (Worker) with a bounded queue in front of it, and dynamic
batching of concurrent requests (Batcher).

Model calls run on the worker thread, never on the event loop, on the device the model was loaded on
(`kfts serve --device`: a GPU with cuda). When an algorithm's rows are independent (InceptionTime), concurrent
requests are batched together (up to `max_batch_size` rows, waiting at most `max_batch_wait` seconds for
more), so that under load the network sees large batches (what that gives: benchmarks/REPORT.md, 'Serving').
Otherwise (LSTM-AD, whose request is one long series the estimator windows into batches itself) requests run
one after another on that thread. The worker's queue is bounded and measured in kfts.serving.metrics.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kfts.serving import metrics
from kfts.serving.admission import Overloaded


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
            raise Overloaded(
                f"{self.waiting} requests are waiting for the model already: retry in {Overloaded.retry_after_s} s"
            )
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
        self.queue: asyncio.Queue = asyncio.Queue()  # bound to the loop that first uses it (Python 3.10+)
        self.task: asyncio.Task | None = None

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.task is None:  # created on first use: inside the server's event loop
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
                results = await self.worker.call(functools.partial(self.fn, rows), [t for _, _, t in batch], len(rows))
            except Exception as e:  # noqa: BLE001 - handed to every waiting request, the worker goes on
                for _, f, _ in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            start = 0
            for r, f, _ in batch:
                if not f.done():
                    f.set_result(results[start : start + len(r)])
                start += len(r)
