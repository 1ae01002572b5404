"""The predictor's memory budget: how many bytes of request bodies it answers at once (`--max-inflight-mb`).

A request holds its body's size of the budget (at least MIN_CHARGE: its headers, objects and answer) from
before its body is read until its answer is sent; one that does not fit is refused at once, 503 with
Retry-After (gRPC: UNAVAILABLE), for the client to retry, instead of being read and pushing the pod past its
memory limit. Requests are answered on one event loop, so the count needs no lock.

A request takes more memory than its body: decoded values, the model's arrays, the answer (an LSTM-AD V1 JSON
answer is many times its request, one object per time step). EXPANSION bounds that ratio, measured with
benchmarks/serving_faults.py's storm; the default budget is what leaves EXPANSION times the budget free under
the container's memory limit.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger("kfts.serving")

MIN_CHARGE = 64 * 2**10
EXPANSION = 24  # peak resident bytes per byte of body in flight, the worst encoding (see the module's docstring)
HEADROOM = 0.9  # of the memory limit: the allocator's fragmentation and what the runtime needs besides requests
RETRY_AFTER_S = 1
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # cgroup v2, v1


class Overloaded(Exception):
    """The predictor is answering as much as its memory allows: 503 with Retry-After, gRPC UNAVAILABLE."""

    retry_after_s = RETRY_AFTER_S


class Admission:
    """The budget of `limit` bytes that the requests being answered share."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    def admit(self, size: int) -> int:
        """Hold `size` bytes (at least MIN_CHARGE) for a request: what to release() once it is answered;
        Overloaded when they do not fit beside the requests held already."""
        size = max(size, MIN_CHARGE)
        if self.held + size > self.limit:
            raise Overloaded(f"the predictor is answering all the requests its memory allows (kfts serve "
                             f"--max-inflight-mb {self.limit / 2**20:g}): retry in {RETRY_AFTER_S} s")
        self.held += size
        return size

    def release(self, size: int) -> None:
        self.held -= size


def default_limit(max_payload: int) -> int:
    """The default budget in bytes: (the container's memory limit x HEADROOM - what the process holds now,
    its model loaded) / EXPANSION, and at least one request of the largest size (with a warning when the
    memory does not allow it). Without a cgroup limit (a laptop, a test), the limit is that of the rendered
    manifest (kfts deploy render --memory's default), so that a local server behaves as the pod will."""
    limit = cgroup_memory_limit() or rendered_memory_limit()
    budget = int((limit * HEADROOM - resident_bytes()) / EXPANSION)
    if budget < max_payload:
        logger.warning("the memory limit (%d MiB) leaves room for %d MiB of requests at once, less than one "
                       "request of --max-payload-mb: lower --max-payload-mb or raise the memory limit",
                       limit >> 20, max(budget, 0) >> 20)
        return max_payload
    return budget


def rendered_memory_limit() -> int:
    """The memory limit `kfts deploy render` gives the predictor by default, in bytes."""
    import inspect

    from kfts.deploy import render_inference_service
    quantity = inspect.signature(render_inference_service).parameters["memory"].default  # e.g. "2Gi"
    number, unit = quantity.rstrip("KMGTi"), quantity.lstrip("0123456789.")
    return int(float(number) * {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
                                "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[unit])


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
