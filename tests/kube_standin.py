"""A small local stand-in for the Kubernetes API: the custom-object endpoints kfts.kube calls (get, create,
replace of namespaced objects), on 127.0.0.1, for the official `kubernetes` client. There is no cluster on
the test machines; this records what was sent and plays a scripted status, so the waiting and failure paths
of the deploy and TrainJob steps run for real against the client library.

    with KubeStandIn(statuses=[{...}, {...}]) as kube:   # status of the object on the 1st, 2nd, ... GET
        api = kube.api()                                 # a kubernetes.client.CustomObjectsApi

With `run_trainjobs`, it also plays Kubeflow Trainer for one node: a created TrainJob's trainer command runs
here, with the PET_* settings the torch runtime gives torchrun (loopback only), and the TrainJob turns
Complete or Failed by its exit code. `kubeconfig(path)` writes a kubeconfig for code that loads its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
                  r"(?:/(?P<name>[^/?]+))?")


class KubeStandIn:
    def __init__(self, statuses: list[dict] | None = None, existing: list[dict] | None = None,
                 run_trainjobs: bool = False):
        self.run_trainjobs, self.logs = run_trainjobs, {}
        self.objects: dict[tuple, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.statuses = list(statuses or [])
        self.version = 0
        for manifest in existing or []:
            self._store(manifest)

    def _key(self, match, name=None) -> tuple:
        return match["group"], match["plural"], match["ns"], name or match["name"]

    def _store(self, manifest: dict, key: tuple | None = None) -> dict:
        self.version += 1
        stored = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": str(self.version)}}
        if key is None:
            group = manifest["apiVersion"].split("/")[0]
            plural = manifest["kind"].lower() + "s"
            key = (group, plural, manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        self.objects[key] = stored
        return stored

    def __enter__(self) -> "KubeStandIn":
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                length = int(self.headers.get("Content-Length", 0))
                return json.loads(self.rfile.read(length)) if length else None

            def _not_found(self, name):
                self._answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                   "reason": "NotFound", "message": f"{name} not found"})

            def do_GET(self):
                match = PATH.match(self.path)
                stand_in.requests.append(("GET", self.path, None))
                key = stand_in._key(match)
                if key not in stand_in.objects:
                    return self._not_found(match["name"])
                if stand_in.statuses:  # the next scripted status, then the last one for ever
                    status = stand_in.statuses.pop(0) if len(stand_in.statuses) > 1 else stand_in.statuses[0]
                    stand_in.objects[key]["status"] = status
                self._answer(200, stand_in.objects[key])

            def do_POST(self):
                match, body = PATH.match(self.path), self._body()
                stand_in.requests.append(("POST", self.path, body))
                key = stand_in._key(match, body["metadata"]["name"])
                if key in stand_in.objects:
                    return self._answer(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                self._answer(201, stand_in._store(body, key))
                if stand_in.run_trainjobs and body["kind"] == "TrainJob":
                    threading.Thread(target=stand_in._run_trainjob, args=(key,), daemon=True).start()

            def do_PUT(self):
                match, body = PATH.match(self.path), self._body()
                stand_in.requests.append(("PUT", self.path, body))
                key = stand_in._key(match)
                if key not in stand_in.objects:
                    return self._not_found(match["name"])
                if body["metadata"].get("resourceVersion") != stand_in.objects[key]["metadata"]["resourceVersion"]:
                    return self._answer(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
                self._answer(200, stand_in._store(body, key))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _run_trainjob(self, key: tuple) -> None:
        from conftest import free_port
        trainer = self.objects[key]["spec"]["trainer"]
        assert trainer.get("numNodes", 1) == 1, "the stand-in plays one node"
        self.objects[key]["status"] = {"conditions": [{"type": "Created", "status": "True", "reason": "Created"}]}
        # as in the image, kfts and torchrun on the PATH: this Python's
        env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", "PET_NNODES": "1", "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", 1)),
               "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(free_port()),
               "GLOO_SOCKET_IFNAME": "lo", **{e["name"]: e["value"] for e in trainer.get("env", [])}}
        run = subprocess.run(trainer["command"], env=env, capture_output=True, text=True, timeout=900)
        self.logs[key[-1]] = run.stdout + run.stderr
        condition = ({"type": "Complete", "status": "True", "reason": "Completed"} if run.returncode == 0 else
                     {"type": "Failed", "status": "True", "reason": "TrainingFailed",
                      "message": f"exit code {run.returncode}"})
        self.objects[key]["status"] = {"conditions": [condition]}

    def kubeconfig(self, path) -> None:
        server = f"http://127.0.0.1:{self.server.server_address[1]}"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": server}}],
            "users": [{"name": "stand-in", "user": {}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in",
                                                          "namespace": "default"}}]}))

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def api(self):
        from kubernetes import client
        configuration = client.Configuration(host=f"http://127.0.0.1:{self.server.server_address[1]}")
        return client.CustomObjectsApi(client.ApiClient(configuration))

    def sent(self, method: str) -> list[dict]:
        return [body for m, _, body in self.requests if m == method]
