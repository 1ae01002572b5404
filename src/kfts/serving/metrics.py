"""The predictor's own Prometheus metrics, beside KServe's latency histograms on the same `/metrics`.

What an autoscaler needs to see for this predictor (deploy/SERVING.md shows an HPA and a KEDA ScaledObject
on them): how many requests it holds, how many wait for the model, how long they wait, and how full the
model calls are. Every model call runs on one worker thread (kfts.serving.batching.Worker), so the busy
fraction of that thread, rate(kfts_model_call_seconds_sum), is the predictor's utilisation.
"""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

LABELS = ["model_name"]
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144)
REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

IN_FLIGHT = Gauge(
    "kfts_requests_in_flight", "requests being answered by this predictor (queued or in a model call)", LABELS
)
QUEUED = Gauge("kfts_requests_queued", "requests waiting for the model worker", LABELS)
QUEUE_WAIT = Histogram(
    "kfts_queue_wait_seconds",
    "time from a request reaching the model queue to the start "
    "of the model call that answers it (batching wait included)",
    LABELS,
    buckets=WAIT_BUCKETS,
)
BATCH_ROWS = Histogram(
    "kfts_batch_rows",
    "rows in one model call: series (inception-time, concurrent requests "
    "batched together) or time steps (lstm-ad, one request)",
    LABELS,
    buckets=ROW_BUCKETS,
)
BATCH_REQUESTS = Histogram(
    "kfts_batch_requests", "requests answered by one model call", LABELS, buckets=REQUEST_BUCKETS
)
MODEL_CALL = Histogram(
    "kfts_model_call_seconds", "duration of one model call on the worker thread", LABELS, buckets=WAIT_BUCKETS
)
