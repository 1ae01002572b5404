"""The predictor's memory budget (`kfts serve --max-inflight-mb`): the memory that the requests being answered
may take together, each by an estimate made before it takes it.

A request holds, from before its body is read until its answer is sent (a Ticket):
- its body's size x DECODE_EXPANSION (JSON, gRPC typed contents) or x BINARY_EXPANSION (binary tensor data,
  gRPC raw contents, CSV), at least MIN_CHARGE: what reading and decoding it may take;
- once its values are decoded, its body's size, and what its rows take in the model call and in the answer, by
  its algorithm's estimate (Adapter.memory); for that it waits up to WAIT_S for room, its decoding done.
A request that does not fit beside those being answered is refused, 503 with Retry-After (gRPC: UNAVAILABLE),
for the client to retry: at once when it arrives, after WAIT_S once decoded, instead of pushing the pod past its memory
limit; one that would not fit even alone gets 413 (gRPC: RESOURCE_EXHAUSTED): it needs fewer rows. Requests are answered
on one event loop, so the counts need no lock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from contextvars import ContextVar
from pathlib import Path

logger = logging.getLogger("kfts.serving")

# the predictor's requests and limits by default (kfts deploy render writes them): a server without a cgroup
# limit budgets as the pod will
RESOURCES = {"cpu": "1", "memory": "2Gi"}
MIN_CHARGE = 64 * 2**10
# memory per byte of body while it is decoded, at most: JSON's Python objects (a one-digit value in a row of its
# own takes a list of 64 bytes for 4 bytes of text), the values' array and their checks
DECODE_EXPANSION = 20
BINARY_EXPANSION = 4  # the body, its tensor's bytes, the values as float32
HEADROOM = 0.8  # of the memory limit: the allocator's fragmentation and what the runtime needs besides requests
RETRY_AFTER_S = 1
WAIT_S = 10  # how long a decoded request waits for room for its rows before its 503
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # cgroup v2, v1


class Overloaded(Exception):
    """The predictor is answering as much as its memory allows: 503 with Retry-After, gRPC UNAVAILABLE."""

    retry_after_s = RETRY_AFTER_S


class TooLarge(Exception):
    """A request that needs more than the whole budget: 413, gRPC RESOURCE_EXHAUSTED."""


class Admission:
    """The budget of `limit` bytes that the requests being answered share."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0
        self.waiters: list = []  # futures of decoded requests waiting for room (Ticket.decoded)

    def enter(self, body_size: int, binary: bool) -> Ticket:
        """A request's ticket, holding what decoding a body of `body_size` bytes may take: `binary` (raw
        tensor data or CSV) or JSON-like (decoded into Python objects)."""
        ticket = Ticket(self, body_size)
        ticket.add(decoding(body_size, binary))
        return ticket

    def release(self, size: int) -> None:
        self.held -= size
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)


class Ticket:
    """What one request holds of the budget; close() gives it back."""

    def __init__(self, admission: Admission, body_size: int):
        self.admission, self.body_size, self.held = admission, body_size, 0

    def add(self, size: int) -> None:
        """Hold `size` bytes more, or raise TooLarge / Overloaded holding nothing more."""
        budget = self.admission
        if self.held + size > budget.limit:
            raise TooLarge(
                f"this request needs about {(self.held + size) / 2**20:.0f} MiB of memory, more than "
                f"the predictor has for all requests (kfts serve --max-inflight-mb "
                f"{budget.limit / 2**20:.0f}): send fewer rows per request"
            )
        if budget.held + size > budget.limit:
            raise Overloaded(
                f"the predictor is answering all the requests its memory allows (kfts serve "
                f"--max-inflight-mb {budget.limit / 2**20:.0f}): retry in {RETRY_AFTER_S} s"
            )
        budget.held += size
        self.held += size

    async def decoded(self, size: int) -> None:
        """The body is decoded: of what decoding held, keep the body's own bytes (they stay until the answer is
        sent), and hold `size` more for the rows, waiting up to WAIT_S for room (the work of decoding is done)
        before Overloaded."""
        keep = max(self.body_size, MIN_CHARGE)
        if self.held > keep:
            self.admission.release(self.held - keep)
            self.held = keep
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while True:
            try:
                return self.add(size)
            except Overloaded:
                if loop.time() >= deadline:
                    raise
            waiter = loop.create_future()
            self.admission.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, deadline - loop.time())
            except asyncio.TimeoutError:
                pass
            finally:
                self.admission.waiters.remove(waiter)

    def close(self) -> None:
        self.admission.release(self.held)
        self.held = 0


def decoding(body_size: int, binary: bool) -> int:
    """What decoding a body may take."""
    return max(body_size * (BINARY_EXPANSION if binary else DECODE_EXPANSION), MIN_CHARGE)


# the ticket of the request being answered, set by the server (RequestGuard, GrpcErrors) for its task
CURRENT: ContextVar[Ticket | None] = ContextVar("kfts_request_ticket", default=None)


async def decoded(size: int) -> None:
    """The request being answered is decoded and needs `size` bytes for its rows (Ticket.decoded): TooLarge, or
    Overloaded when no room came in time. Nothing outside a server's request (a KftsModel called in-process)."""
    ticket = CURRENT.get()
    if ticket is not None:
        await ticket.decoded(size)


@functools.cache
def _libc():
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def malloc_returns_memory() -> None:
    """glibc's malloc, set to give freed memory back: by default it keeps memory freed by one thread's arena from
    the others (up to 8 arenas per core), and after a large block is freed it serves blocks up to that size from
    its heaps, which it keeps. With requests of many MiB decoded on several threads, the resident memory would
    creep past what the budget counts. Two arenas (as MALLOC_ARENA_MAX=2, usual for Python servers), blocks of a
    MiB and more mapped apart (freed at once), heaps trimmed past 16 MiB free. Elsewhere than glibc nothing."""
    try:
        libc = _libc()
        for parameter, value in (
            (-8, 2),
            (-3, 2**20),
            (-1, 16 * 2**20),
        ):  # M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
            libc.mallopt(parameter, value)
    except (OSError, AttributeError):
        pass


def smallest_limit(max_payload: int) -> int:
    """The least budget that a body of the largest size (--max-payload-mb) fits in."""
    return decoding(max_payload, binary=False)


def default_limit(max_payload: int) -> int:
    """The default budget in bytes: the container's memory limit x HEADROOM, less what the process holds now
    (its model loaded and warmed up), and at least smallest_limit() (with a warning when the memory does not
    allow it). Without a cgroup limit (a laptop, a test), the limit is that of the rendered manifest (kfts
    deploy render --memory's default), so that a local server behaves as the pod will."""
    limit = cgroup_memory_limit() or rendered_memory_limit()
    budget = int(limit * HEADROOM - resident_bytes())
    if budget < smallest_limit(max_payload):
        logger.warning(
            "the memory limit (%d MiB) leaves %d MiB for requests, less than a body of --max-payload-mb "
            "may take to decode: lower --max-payload-mb or raise the memory limit",
            limit >> 20,
            max(budget, 0) >> 20,
        )
        return smallest_limit(max_payload)
    return budget


def rendered_memory_limit() -> int:
    """The memory limit `kfts deploy render` gives the predictor by default, in bytes."""
    return memory_bytes(RESOURCES["memory"])


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("2Gi", "512M", "1000000") in bytes."""
    number, unit = quantity.rstrip("KMGTi"), quantity.lstrip("0123456789.")
    return int(
        float(number)
        * {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[
            unit
        ]
    )


def cgroup_memory_limit() -> int | None:
    """The memory limit of this process's container in bytes (cgroup v2 or v1), None when there is none."""
    for path in CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" (v2) or a huge number (v1): no limit
            return int(text)
        return None
    return None


def resident_bytes() -> int:
    """This process's resident memory (VmRSS), 0 where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
