"""`kfts pipeline submit` and `schedule` against a local stand-in for the KFP API (no cluster here): a small
HTTP server on 127.0.0.1 that answers like the KFP v2beta1 API and records every request. The requests are made
by kfp 2.17's own Client (kfp/client/client.py: create_run_from_pipeline_package, create_recurring_run and
_create_job_config, which rewrites the tasks' caching options when enable_caching is set), so what is
recorded is what a KFP API server receives."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from helpers import ROOT, run_cli


class FakeKfp(BaseHTTPRequestHandler):
    requests: list = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append((self.command, self.path, body))
        return body

    def do_GET(self):
        self._record()
        if self.path.startswith("/apis/v2beta1/healthz"):
            return self._reply({"multi_user": False})
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({"experiments": [], "total_size": 0})
        self._reply({})

    def do_POST(self):
        body = self._record()
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        if self.path.startswith("/apis/v2beta1/runs"):
            return self._reply({"run_id": "run-1", "display_name": body.get("display_name")})
        if self.path.startswith("/apis/v2beta1/recurringruns"):
            return self._reply({"recurring_run_id": "job-1", "display_name": body.get("display_name")})
        self._reply({})

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_api():
    FakeKfp.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", FakeKfp.requests
    server.shutdown()


def _spec(body) -> dict:
    spec = body["pipeline_spec"]  # {"pipeline_spec", "platform_spec"} when the IR has Kubernetes settings
    return spec.get("pipeline_spec", spec)


def _pipeline_name(body) -> str:
    return _spec(body)["pipelineInfo"]["name"]


def _caching(spec: dict) -> dict[str, bool]:
    """Whether KFP may serve each task of the pipeline's top DAG from its cache, by display name: the IR's
    cachingOptions.enableCache, absent when false (the tasks kfp's _override_caching_options rewrites)."""
    return {
        task["taskInfo"]["name"]: task.get("cachingOptions", {}).get("enableCache", False)
        for task in spec["root"]["dag"]["tasks"].values()
    }


def _posted(requests, prefix):
    return [body for method, path, body in requests if method == "POST" and path.startswith(prefix)]


def test_submit_creates_a_run_of_the_compiled_pipeline(kfp_api):
    host, requests = kfp_api
    result = run_cli(
        "pipeline",
        "submit",
        "--host",
        host,
        "--package",
        ROOT / "pipelines/compiled/inception-time-gpu.yaml",
        "--param",
        "train_uri=s3://b/train.csv",
        "--param",
        "epochs=5",
        "--run-name",
        "nightly",
        check=True,
    )
    assert "run run-1 created" in result.stdout
    [run] = _posted(requests, "/apis/v2beta1/runs")
    assert run["display_name"] == "nightly"
    assert run["runtime_config"]["parameters"] == {"train_uri": "s3://b/train.csv", "epochs": 5}
    assert _pipeline_name(run) == "inception-time"
    assert "tolerations" in yaml.safe_dump(run["pipeline_spec"])  # the GPU variant, as compiled


def test_schedule_creates_a_recurring_run_with_seconds_first_cron(kfp_api):
    host, requests = kfp_api
    result = run_cli(
        "pipeline",
        "schedule",
        "retrain-lstm-ad",
        "--host",
        host,
        "--cron",
        "0 3 * * 1",
        "--param",
        "champion_uri=s3://b/champion",
        "--gpus",
        "1",
        check=True,
    )
    assert "recurring run job-1 created" in result.stdout
    [experiment] = _posted(requests, "/apis/v2beta1/experiments")
    assert experiment["display_name"] == "kfts"
    [job] = _posted(requests, "/apis/v2beta1/recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert job["experiment_id"] == "exp-1" and str(job["max_concurrency"]) == "1"
    assert job["runtime_config"]["parameters"] == {"champion_uri": "s3://b/champion"}
    assert _pipeline_name(job) == "retrain-lstm-ad"
    # compiled for the GPU pool on the way
    assert "nvidia.com/gpu" in yaml.safe_dump(job["pipeline_spec"])


def test_a_bad_cron_is_refused_before_anything_is_sent(kfp_api):
    host, requests = kfp_api
    result = run_cli("pipeline", "schedule", "lstm-ad", "--host", host, "--cron", "daily")
    assert result.returncode == 2 and "--cron" in result.stderr
    assert not _posted(requests, "/apis")


@pytest.mark.parametrize("command", [["submit", "lstm-ad"], ["schedule", "lstm-ad", "--cron", "0 3 * * 1"]])
def test_an_unreachable_kfp_host_ends_in_one_clear_line(command):
    result = run_cli("pipeline", *command, "--host", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.startswith("error: the KFP API at http://127.0.0.1:9 cannot be reached (")
    assert len(result.stderr.splitlines()) == 1 and "internal error" not in result.stderr


# the retraining pipeline's tasks that read what changes under the same URI, or decide from it
# (pipelines.common.side_effect): a recurring run served them from the cache would compare the challenger on
# the first run's data
UNCACHED = {
    "validate train",
    "validate valid",
    "validate holdout",
    "validate holdout labels",
    "check inputs together",
    "fetch champion",
    "fetch init model",
    "choose champion",
}


def _send(command: str, host: str, *flags) -> None:
    package = ROOT / "pipelines/compiled/retrain-lstm-ad.yaml"
    extra = ["--cron", "0 3 * * 1"] if command == "schedule" else []
    run_cli("pipeline", command, "--host", host, "--package", package, *extra, *flags, check=True)


@pytest.mark.parametrize(
    "command, path", [("submit", "/apis/v2beta1/runs"), ("schedule", "/apis/v2beta1/recurringruns")]
)
def test_caching_is_left_to_the_pipeline_unless_asked(command, path, kfp_api):
    host, requests = kfp_api
    compiled = next(yaml.safe_load_all((ROOT / "pipelines/compiled/retrain-lstm-ad.yaml").read_text()))
    _send(command, host)
    [body] = _posted(requests, path)
    sent = _caching(_spec(body))
    assert sent == _caching(compiled)  # as compiled: side-effect tasks uncached, training cached
    assert not any(sent[name] for name in UNCACHED)
    assert sent["train challenger"] and sent["evaluate champion"]

    requests.clear()
    _send(command, host, "--cache")  # the user's choice applies to every task (kfp's enable_caching=True)
    [body] = _posted(requests, path)
    assert all(_caching(_spec(body)).values())

    requests.clear()
    _send(command, host, "--no-cache")
    [body] = _posted(requests, path)
    assert not any(_caching(_spec(body)).values())


@pytest.mark.parametrize(
    "command, path", [("submit", "/apis/v2beta1/runs"), ("schedule", "/apis/v2beta1/recurringruns")]
)
def test_the_run_carries_the_service_account_asked_for(command, path, kfp_api):
    host, requests = kfp_api
    _send(command, host, "--service-account", "kfts-runner")
    [body] = _posted(requests, path)
    assert body["service_account"] == "kfts-runner"
    requests.clear()
    _send(command, host)  # none asked: the server's default (pipeline-runner, or the profile's default-editor)
    [body] = _posted(requests, path)
    assert "service_account" not in body
