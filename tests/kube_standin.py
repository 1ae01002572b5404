"""A small local stand-in for the Kubernetes API: the custom-object endpoints kfts.kubeflow.kube calls (get, create,
replace of namespaced objects), on 127.0.0.1, for the official `kubernetes` client. There is no cluster on
the test machines; this records what was sent and plays a scripted status, so the waiting and failure paths
of the deploy and TrainJob steps run for real against the client library.

    with KubeStandIn(statuses=[{...}, {...}]) as kube:   # status of the object on the 1st, 2nd, ... GET
        api = kube.api()                                 # a kubernetes.client.CustomObjectsApi

`statuses` may also be a dict: object name -> its own script. Like the API server for a custom resource with
a status subresource, it sets metadata.generation to 1 on create and adds 1 when a replace changes the spec
(metadata and status changes do not count), and a replace keeps the stored status whatever the body says.
With `kserve=KServe(...)` InferenceServices get their status from a stand-in of KServe's controller instead
of a script (KServe below). Secrets (v1, given in `existing` with their stringData) are read at
/api/v1/namespaces/NS/secrets/NAME, and by pods' secretKeyRef env entries. Reads of the plurals in
`forbidden` get 403, as RBAC answers an account without the rule.

kserve_pod() and trainer_pod() build the pod spec KServe and Trainer make of what kfts renders.

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

PATH = re.compile(
    r"^/api(?:s/(?P<group>[^/]+))?/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/?]+))?"
)


class KubeStandIn:
    def __init__(
        self,
        statuses: list[dict] | dict[str, list[dict]] | None = None,
        existing: list[dict] | None = None,
        run_trainjobs: bool = False,
        kserve: KServe | None = None,
        forbidden: tuple[str, ...] = (),
    ):
        self.run_trainjobs, self.logs, self.kserve, self.forbidden = run_trainjobs, {}, kserve, forbidden
        self.objects: dict[tuple, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.statuses = (
            {None: [], **{name: list(script) for name, script in statuses.items()}}
            if isinstance(statuses, dict)
            else {None: list(statuses or [])}
        )
        self.version = 0
        for manifest in existing or []:
            self._store(manifest)

    def _key(self, match, name=None) -> tuple:
        return match["group"] or "", match["plural"], match["ns"], name or match["name"]  # "": the core group

    def _store(self, manifest: dict, key: tuple | None = None) -> dict:
        self.version += 1
        stored = {
            **manifest,
            "metadata": {
                **manifest["metadata"],
                "resourceVersion": str(self.version),
                "generation": manifest["metadata"].get("generation", 1),
            },
        }
        if key is None:
            group = manifest["apiVersion"].rpartition("/")[0]
            plural = manifest["kind"].lower() + "s"
            key = (group, plural, manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        self.objects[key] = stored
        return stored

    def __enter__(self) -> KubeStandIn:
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
                self._answer(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "code": 404,
                        "reason": "NotFound",
                        "message": f"{name} not found",
                    },
                )

            def do_GET(self):
                match = PATH.match(self.path)
                stand_in.requests.append(("GET", self.path, None))
                key = stand_in._key(match)
                if match["plural"] in stand_in.forbidden:
                    return self._answer(403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
                if key not in stand_in.objects:
                    return self._not_found(match["name"])
                if stand_in.kserve and match["plural"] == "inferenceservices":
                    stand_in.kserve.reconcile(stand_in.objects[key])
                else:
                    script = stand_in.statuses.get(match["name"], stand_in.statuses[None])
                    if script:  # the next scripted status, then the last one for ever
                        stand_in.objects[key]["status"] = script.pop(0) if len(script) > 1 else script[0]
                self._answer(200, stand_in.objects[key])

            def do_POST(self):
                match, body = PATH.match(self.path), self._body()
                stand_in.requests.append(("POST", self.path, body))
                key = stand_in._key(match, body["metadata"]["name"])
                if key in stand_in.objects:
                    return self._answer(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                created = {k: v for k, v in body.items() if k != "status"}  # the status subresource's
                created["metadata"] = {**body["metadata"], "generation": 1}
                self._answer(201, stand_in._store(created, key))
                if stand_in.run_trainjobs and body["kind"] == "TrainJob":
                    threading.Thread(target=stand_in._run_trainjob, args=(key,), daemon=True).start()

            def do_PUT(self):
                match, body = PATH.match(self.path), self._body()
                stand_in.requests.append(("PUT", self.path, body))
                key = stand_in._key(match)
                if key not in stand_in.objects:
                    return self._not_found(match["name"])
                stored = stand_in.objects[key]
                if body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
                    return self._answer(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
                generation = stored["metadata"]["generation"] + (body.get("spec") != stored.get("spec"))
                body = {**body, "metadata": {**body["metadata"], "generation": generation}}
                body.pop("status", None)  # the status subresource: only the controller writes it
                if "status" in stored:
                    body["status"] = stored["status"]
                self._answer(200, stand_in._store(body, key))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _run_trainjob(self, key: tuple) -> None:
        from helpers import free_port

        trainer = self.objects[key]["spec"]["trainer"]
        assert trainer.get("numNodes", 1) == 1, "the stand-in plays one node"
        self.objects[key]["status"] = {"conditions": [{"type": "Created", "status": "True", "reason": "Created"}]}
        # as in the image, kfts and torchrun on the PATH: this Python's; the PET_* settings on loopback
        env = {
            **os.environ,
            "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
            "PET_NNODES": "1",
            "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", 1)),
            "PET_NODE_RANK": "0",
            "PET_MASTER_ADDR": "127.0.0.1",
            "PET_MASTER_PORT": str(free_port()),
            "GLOO_SOCKET_IFNAME": "lo",
            **self.container_env(trainer.get("env", [])),
        }
        run = subprocess.run(trainer["command"], env=env, capture_output=True, text=True, timeout=900)
        self.logs[key[-1]] = run.stdout + run.stderr
        condition = (
            {"type": "Complete", "status": "True", "reason": "Completed"}
            if run.returncode == 0
            else {
                "type": "Failed",
                "status": "True",
                "reason": "TrainingFailed",
                "message": f"exit code {run.returncode}",
            }
        )
        self.objects[key]["status"] = {"conditions": [condition]}

    def container_env(self, env: list[dict]) -> dict[str, str]:
        """A container's env as the kubelet resolves it: values, and secretKeyRef from the stand-in's
        Secrets (a missing optional key is left out; a missing required one fails, as the pod would)."""
        resolved = {}
        for entry in env:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if ref is None:
                resolved[entry["name"]] = entry["value"]
            elif ref["key"] in self.secret_data(ref["name"]):
                resolved[entry["name"]] = self.secret_data(ref["name"])[ref["key"]]
            elif not ref.get("optional"):
                raise AssertionError(f"CreateContainerConfigError: secret {ref['name']} has no key {ref['key']}")
        return resolved

    def secret_data(self, name: str) -> dict[str, str]:
        return next(
            (
                o.get("stringData", {})
                for (group, plural, _, n), o in self.objects.items()
                if (group, plural, n) == ("", "secrets", name)
            ),
            {},
        )

    def kubeconfig(self, path) -> None:
        server = f"http://127.0.0.1:{self.server.server_address[1]}"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "stand-in",
                    "clusters": [{"name": "stand-in", "cluster": {"server": server}}],
                    "users": [{"name": "stand-in", "user": {}}],
                    "contexts": [
                        {
                            "name": "stand-in",
                            "context": {"cluster": "stand-in", "user": "stand-in", "namespace": "default"},
                        }
                    ],
                }
            )
        )

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def api(self):
        from kubernetes import client

        configuration = client.Configuration(host=f"http://127.0.0.1:{self.server.server_address[1]}")
        return client.CustomObjectsApi(client.ApiClient(configuration))

    def sent(self, method: str) -> list[dict]:
        return [body for m, _, body in self.requests if m == method]


class KServe:
    """KServe's InferenceService controller as the stand-in plays it, from its source (kserve/kserve v0.20.0:
    pkg/controller/v1beta1/inferenceservice/controller.go and components/predictor.go,
    pkg/apis/serving/v1beta1/inference_service_status.go PropagateRawStatus and PropagateStatus). One step
    per read of the object:

    - a new spec (metadata.generation above the last one reconciled) is taken up `lag` reads after it was
      written (the controller's work queue): reads before that still show the previous spec's status;
    - taking it up updates the predictor's Deployment (Standard) or Knative Service (Knative), whose own
      generation goes up by one, and status.observedGeneration is copied from that child's;
    - Standard: a Deployment keeps its old pods Available while new ones start, so PredictorReady and Ready
      stay True (reason MinimumReplicasAvailable); `start` reads later the new pods serve (reason
      NewReplicaSetAvailable, which KServe 0.16 and later copy from the Deployment's Progressing condition).
      A first Deployment is Ready=False MinimumReplicasUnavailable until then. Pods of a spec that never
      starts (`broken(spec)`) end in Ready=False ProgressDeadlineExceeded `deadline` reads after it was taken
      up, while the old pods go on serving;
    - Knative (mode "Knative"): Ready=Unknown while the new revision starts, then True, or False
      RevisionFailed for a broken spec (traffic stays on the last ready revision).
    """

    def __init__(
        self, mode: str = "Standard", *, broken=lambda spec: False, lag: int = 2, start: int = 2, deadline: int = 4
    ):
        self.mode, self.broken, self.lag, self.start, self.deadline = mode, broken, lag, start, deadline
        self.state: dict[str, dict] = {}
        self.reconciled: list[dict] = []  # the specs taken up, in order

    def reconcile(self, isvc: dict) -> None:
        state = self.state.setdefault(isvc["metadata"]["name"], {"seen": 0, "child": 0, "queued": 0, "reads": 0})
        if isvc["metadata"]["generation"] > state["seen"]:
            state["queued"] += 1
            if state["queued"] < self.lag:
                return
            state.update(
                seen=isvc["metadata"]["generation"],
                child=state["child"] + 1,
                queued=0,
                reads=0,
                serving=state.get("serving", False) or state.get("started", False),
                started=False,
            )
            self.reconciled.append(isvc["spec"])
        else:
            state["reads"] += 1
        broken = self.broken(isvc["spec"])
        state["started"] = state["reads"] >= self.start and not broken
        isvc["status"] = {
            "observedGeneration": state["child"],
            "deploymentMode": self.mode,
            "conditions": self._conditions(state, broken),
        }
        if state["started"] or state["serving"]:
            isvc["status"]["url"] = f"http://{isvc['metadata']['name']}.{isvc['metadata']['namespace']}.example"

    def _conditions(self, state: dict, broken: bool) -> list[dict]:
        if self.mode == "Knative":
            ready = (
                {"status": "True"}
                if state["started"]
                else {"status": "False", "reason": "RevisionFailed", "message": "Container failed with: exit 1"}
                if broken and state["reads"] >= self.start
                else {"status": "Unknown"}
            )
        elif state["started"]:
            ready = {"status": "True", "reason": "NewReplicaSetAvailable"}
        elif broken and state["reads"] >= self.deadline:
            ready = {
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet has timed out progressing.",
            }
        elif state["serving"]:
            ready = {"status": "True", "reason": "MinimumReplicasAvailable"}
        else:
            ready = {"status": "False", "reason": "MinimumReplicasUnavailable"}
        return [{"type": "PredictorReady", **ready}, {"type": "Ready", **ready}]


# -- the pods the controllers make of kfts's manifests ------------------------------------------------------------

POD_FIELDS = {
    "containers",
    "initContainers",
    "volumes",
    "securityContext",
    "serviceAccountName",
    "nodeSelector",
    "tolerations",
    "affinity",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "imagePullSecrets",
}
MODEL_ONLY = {"modelFormat", "runtime", "runtimeVersion", "storageUri", "storage", "protocolVersion"}


def kserve_pod(isvc: dict, runtime: dict | None = None) -> dict:
    """The predictor pod spec KServe makes of an InferenceService (kserve v0.20.0, components/predictor.go with
    utils.MergePodSpec and MergeRuntimeContainers): the predictor's pod fields; for the short form the
    runtime's containers, `kserve-container` overridden by the model's container fields, and the runtime's
    volumes merged by name. Less what KServe adds itself (the storage initializer and /mnt/models)."""
    predictor = isvc["spec"]["predictor"]
    pod = {k: v for k, v in predictor.items() if k in POD_FIELDS}
    if "model" in predictor:
        first, *others = runtime["spec"]["containers"]
        model = {k: v for k, v in predictor["model"].items() if k not in MODEL_ONLY}
        pod["containers"] = [{**first, **model}, *others]
        pod["volumes"] = _by_name(runtime["spec"].get("volumes", []), pod.get("volumes", []))
    return pod


def trainer_pod(trainjob: dict, runtime: dict) -> dict:
    """The node pod spec Trainer makes of a TrainJob on a ClusterTrainingRuntime (kubeflow/trainer v2.3.0:
    pkg/runtime/core/trainingruntime.go mergeRuntimePatches, a strategic merge, lists by name;
    framework/plugins/jobset and torch): the runtime's `node` pod with the TrainJob's runtimePatches, then on
    container `node` the trainer's image, command, resourcesPerNode and env, and the PET_* variables."""
    [node] = [j for j in runtime["spec"]["template"]["spec"]["replicatedJobs"] if j["name"] == "node"]
    pod = json.loads(json.dumps(node["template"]["spec"]["template"]["spec"]))
    for patch in trainjob["spec"].get("runtimePatches", []):
        for job in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            assert job["name"] == "node", "Trainer refuses a patch for a replicated job the runtime lacks"
            patched = job["template"]["spec"]["template"]["spec"]
            for key, value in patched.items():
                if key == "containers":
                    pod["containers"] = [_merge_container(c, value) for c in pod["containers"]]
                elif key == "volumes":
                    pod["volumes"] = _by_name(pod.get("volumes", []), value)
                else:
                    pod[key] = value
    trainer = trainjob["spec"]["trainer"]
    [container] = [c for c in pod["containers"] if c["name"] == "node"]
    container.update({k: trainer[k] for k in ("image", "command", "args") if k in trainer})
    container["resources"] = trainer.get("resourcesPerNode", container.get("resources", {}))
    name = trainjob["metadata"]["name"]
    pet = [
        {"name": "PET_NNODES", "value": str(trainer.get("numNodes", 1))},
        {"name": "PET_NPROC_PER_NODE", "value": str(trainer.get("numProcPerNode", "auto"))},
        {
            "name": "PET_NODE_RANK",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
            },
        },
        {"name": "PET_MASTER_ADDR", "value": f"{name}-node-0-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": "29500"},
    ]
    container["env"] = _by_name(container.get("env", []), [*trainer.get("env", []), *pet])
    return pod


def _merge_container(container: dict, patches: list[dict]) -> dict:
    for patch in patches:
        if patch["name"] == container["name"]:
            assert not (container["name"] == "node" and patch.get("env")), "Trainer refuses env patches of node"
            container = {
                **container,
                **{
                    k: _by_name(container.get(k, []), v) if isinstance(v, list) else v
                    for k, v in patch.items()
                    if k != "name"
                },
            }
    return container


def _by_name(base: list[dict], more: list[dict]) -> list[dict]:
    merged = {item["name"]: item for item in base}
    merged.update({item["name"]: item for item in more})
    return list(merged.values())
