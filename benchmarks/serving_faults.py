"""Serving under faults: the real `kfts serve` on 127.0.0.1 under a seeded mix of good requests and client
mistakes (the mix of tests/integration/serving/test_serving_faults.py, larger).

A tiny InceptionTime (4 filters, depth 3, 2 networks, series of 24 steps) is served with `--max-payload-mb 1`:
the figures are about the server's handling of faults, not the model's cost. Good requests are V1 JSON, V2 REST
(with probabilities) and text/csv of 1-4 series; mistakes are malformed JSON, NaN, non-numeric values, wrong
series length, wrong shape, empty instances, bodies over the payload limit and unknown model names, sent over
V1, V2 and CSV. A warm-up round of the same mix (a quarter of the size) runs first; the table counts the
measured round by status code per kind. A wrong answer is a good answer that differs from the in-process
prediction of the same rows. Latency is that of good requests only, as the client (sharing the cores) sees it.
The server's log is counted too: a client's mistake should leave one `client error` line and no traceback.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
WORK = Path(__file__).resolve().parent / "work" / "serving_faults"
NAME, LENGTH = "it", 24
CONCURRENCY = 16


def section(quick: bool) -> str:
    sys.path.insert(0, str(TESTS))  # the mix and the server helper live with the tests that check them
    from test_serving_faults import GOOD_KINDS, KINDS, MAX_PAYLOAD_MB, good_rows, make_mix, rss_mb, send, wrong_answers

    from kfts.algorithms.inception_time.estimator import InceptionTime, Params
    from kfts.core.csvio import LabeledSeries
    from kfts.jobs.load import load_model

    from helpers import Server, make_classification

    total = 200 if quick else 2000
    WORK.mkdir(parents=True, exist_ok=True)
    labels, values = make_classification(n_per_class=8, length=LENGTH, classes=("a", "b", "c"))
    trained = InceptionTime(
        Params(filters=4, depth=3, models=2, epochs=2, batch_size=8, ensemble="stacked"), device="cpu", seed=0
    )
    trained.fit(LabeledSeries(labels, values))
    trained.save(WORK / "model")
    model = load_model(WORK / "model", device="cpu")
    pool = good_rows(model, values, np.random.default_rng(0))
    max_bytes = MAX_PAYLOAD_MB * 2**20

    server = Server(WORK / "model", NAME, WORK / "server.log", "--max-payload-mb", str(MAX_PAYLOAD_MB))
    try:
        server.wait_ready(timeout=600)
        rss_start = rss_mb(server.process.pid)
        warm = send(server.url, make_mix(total // 4, pool, NAME, LENGTH, max_bytes, seed=1), CONCURRENCY)
        rss_warm = rss_mb(server.process.pid)
        mix = make_mix(total, pool, NAME, LENGTH, max_bytes, seed=2)
        start = time.perf_counter()
        answers = send(server.url, mix, CONCURRENCY)
        seconds = time.perf_counter() - start
        rss_end = rss_mb(server.process.pid)
        ready = server.http.get(f"/v2/models/{NAME}/ready").status_code == 200
    finally:
        server.stop()
    log = server.log.read_text()
    mistakes = sum(a.status is not None and 400 <= a.status < 500 for a in warm + answers)

    wrong = len(wrong_answers(model, pool, warm + answers))
    unexpected = sum(a.status != a.request.status for a in warm + answers)
    counts = {
        kind: Counter(a.status if a.status is not None else "no answer" for a in answers if a.request.kind == kind)
        for kind in KINDS
    }
    codes = sorted({c for kind in counts.values() for c in kind}, key=str)
    latencies = np.array([a.seconds for a in answers if a.request.kind in GOOD_KINDS]) * 1000
    p50, p99 = np.percentile(latencies, [50, 99])
    fives = sum(n for kind in counts.values() for c, n in kind.items() if isinstance(c, int) and c >= 500)
    sent_mb = sum(len(r.body) for r in mix) / 2**20

    lines = [
        "## Serving under faults (kfts serve, a mix of good requests and client mistakes)",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        f"{total} requests ({sent_mb:.0f} MB of bodies), {CONCURRENCY} in flight, {total / seconds:.0f} "
        f"requests/s; good requests p50 {p50:.1f} ms, p99 {p99:.1f} ms.",
        "",
        f"- 5xx answers: **{fives}**; answers other than the contract's status (warm-up included): "
        f"**{unexpected}**; wrong answers: **{wrong}**; ready at the end: **{'yes' if ready else 'NO'}**",
        f"- server log: {log.count('Traceback')} tracebacks; {log.count('client error ')} `client error` lines "
        f"for {mistakes} 4xx answers (one each, warm-up included)",
        f"- server RSS: {rss_start:.0f} MB ready, {rss_warm:.0f} MB after the warm-up ({total // 4} "
        f"requests), {rss_end:.0f} MB at the end ({rss_end - rss_warm:+.0f} MB over {total} requests)",
        "",
        "| kind | requests | " + " | ".join(str(c) for c in codes) + " |",
        "|---|---:|" + "---:|" * len(codes),
    ]
    for kind, counter in counts.items():
        lines.append(
            f"| {kind} | {sum(counter.values())} | " + " | ".join(str(counter.get(c, 0)) for c in codes) + " |"
        )
    return "\n".join(lines + [""] + memory_storm(quick)) + "\n"


def memory_storm(quick: bool) -> list[str]:
    """The storm of tests/integration/serving/test_serving_memory.py: the largest request of every encoding, `per` of
    each at once, to a univariate LSTM-AD served with the defaults; peak RSS against the rendered memory limit."""
    from test_serving_memory import ENCODINGS, PAYLOAD_MB, peak_rss_bytes, rendered_memory_limit, served_detector, storm
    from test_serving_memory import NAME as DETECTOR

    from helpers import Server

    per = 1 if quick else 2
    server = Server(served_detector(WORK), DETECTOR, WORK / "memory-server.log")
    try:
        server.wait_ready(timeout=600)
        ready = peak_rss_bytes(server.process.pid)
        result = storm(server, PAYLOAD_MB * 2**20, per_encoding=per)
        peak = peak_rss_bytes(server.process.pid)
        alive = server.process.poll() is None
    finally:
        server.stop()
    limit = rendered_memory_limit()
    ok = sum(status == 200 and answered == rows for _, rows, status, answered, _ in result.answers)
    probes = [seconds for seconds, status in result.probes if status == 200]
    return [
        "### Memory under a storm of the largest requests (tests/integration/serving/test_serving_memory.py)",
        "",
        f"{per} request(s) of each encoding ({', '.join(ENCODINGS)}) at once, every body {PAYLOAD_MB} MiB "
        f"(`--max-payload-mb` default) of one series, to a univariate LSTM-AD with the default memory budget; "
        "refused requests are sent again after their Retry-After.",
        "",
        f"- peak RSS **{peak >> 20} MiB** against the rendered limit of {limit >> 20} MiB ({ready >> 20} MiB "
        f"when ready); alive at the end: **{'yes' if alive else 'NO'}**",
        f"- answered in full: **{ok}/{len(result.answers)}** in {result.seconds:.0f} s, after "
        f"{sum(r[4] for r in result.answers)} refusals (503 / UNAVAILABLE)",
        f"- health probe: {len(probes)}/{len(result.probes)} answered 200, slowest {max(probes, default=0):.2f} s",
    ]
