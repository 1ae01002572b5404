"""The few Kubernetes calls kfts makes from inside a pipeline step: create or replace a custom object (an
InferenceService, a TrainJob) and wait for one of its conditions, saying what it is doing in the task log.

Credentials: the pod's service account in a cluster, else the user's kubeconfig. Every wait has a timeout
and ends with the object's own reason when it fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    name: str  # as people write it, for the log

    def where(self, namespace: str) -> dict:
        return {"group": self.group, "version": self.version, "namespace": namespace, "plural": self.plural}


INFERENCE_SERVICE = Kind("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")
TRAIN_JOB = Kind("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")


class Failed(RuntimeError):
    """The object reported failure (its reason and message), or did not get there in time."""


def own_namespace(default: str = "default") -> str:
    """The namespace this pod runs in (a Kubeflow profile's), or `default` outside a cluster."""
    return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.is_file() else default


def custom_objects():
    import os

    from kubernetes import client, config
    try:
        config.load_incluster_config()
    except config.ConfigException:  # outside a cluster: KUBECONFIG as it is now (the client reads it at import)
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.CustomObjectsApi()


def apply(api, kind: Kind, manifest: dict, *, replace: bool = True, log=print) -> None:
    """Create the object, or replace the one of the same name (with `replace`; else keep it: a retried
    step then waits for what its first attempt started)."""
    from kubernetes.client import ApiException
    name, where = manifest["metadata"]["name"], kind.where(manifest["metadata"]["namespace"])
    try:
        current = api.get_namespaced_custom_object(name=name, **where)
    except ApiException as e:
        if e.status != 404:
            raise
        api.create_namespaced_custom_object(body=manifest, **where)
        log(f"created {kind.name} {where['namespace']}/{name}")
        return
    if not replace:
        log(f"{kind.name} {where['namespace']}/{name} exists: following it")
        return
    manifest = {**manifest, "metadata": {**manifest["metadata"],
                                         "resourceVersion": current["metadata"]["resourceVersion"]}}
    api.replace_namespaced_custom_object(name=name, body=manifest, **where)
    log(f"replaced {kind.name} {where['namespace']}/{name}")


def wait_for(api, kind: Kind, name: str, namespace: str, *, success: str, failure: str | None = None,
             timeout_s: float = 600, poll_s: float = 10, log=print) -> dict:
    """Poll until condition `success` is True (returns the object's status) or `failure` is True (raises
    Failed with the condition's reason and message); each change of conditions goes to the log."""
    deadline, seen = time.monotonic() + timeout_s, None
    while True:
        status = api.get_namespaced_custom_object(name=name, **kind.where(namespace)).get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions", [])}
        summary = ", ".join(f"{t}={c.get('status')}" + (f" ({c['reason']})" if c.get("reason") else "")
                            for t, c in conditions.items())
        if summary != seen:
            log(f"{kind.name} {namespace}/{name}: {summary or 'no conditions yet'}")
            seen = summary
        if conditions.get(success, {}).get("status") == "True":
            return status
        if failure and conditions.get(failure, {}).get("status") == "True":
            c = conditions[failure]
            raise Failed(f"{kind.name} {namespace}/{name} failed: {c.get('reason', '')}: {c.get('message', '')}")
        if time.monotonic() >= deadline:
            raise Failed(f"{kind.name} {namespace}/{name} was not {success} within {timeout_s:.0f} s "
                         f"(conditions: {summary or 'none'})")
        time.sleep(poll_s)
