"""The few Kubernetes calls kfts makes from inside a pipeline step: read, create or replace a custom object (an
InferenceService, a TrainJob) and wait until its controller reports what it was asked for, saying what it is
doing in the task log.

Credentials: the pod's service account in a cluster, else the user's kubeconfig. Every wait has a timeout
and ends with the object's own reason when it fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


def get(api, kind: Kind, name: str, namespace: str) -> dict | None:
    """The object, or None when there is none of that name."""
    from kubernetes.client import ApiException

    try:
        return api.get_namespaced_custom_object(name=name, **kind.where(namespace))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def secret_annotations(api, name: str, namespace: str) -> dict | None:
    """The annotations of the Secret `name`, or None when this pod may not read Secrets. A Secret that is not
    there is an InputError: the pods that name it would not start."""
    from kubernetes.client import ApiException, CoreV1Api

    from kfts.core.errors import InputError

    try:
        secret = CoreV1Api(api.api_client).read_namespaced_secret(name, namespace)
    except ApiException as e:
        if e.status == 403:
            return None
        if e.status == 404:
            raise InputError(f"there is no Secret {namespace}/{name}") from None
        raise
    return secret.metadata.annotations or {}


def create(api, kind: Kind, manifest: dict, *, log=print) -> dict:
    """Create the object: as the API server stored it (with its metadata.generation)."""
    where = kind.where(manifest["metadata"]["namespace"])
    stored = api.create_namespaced_custom_object(body=manifest, **where)
    log(f"created {kind.name} {where['namespace']}/{manifest['metadata']['name']}")
    return stored


def replace(api, kind: Kind, current: dict, manifest: dict, *, log=print) -> dict:
    """Replace `current` (the object as read) by `manifest`'s labels, annotations and spec, keeping what the
    cluster put in its metadata (finalizers, uid): the object as stored, with the generation the new spec got."""
    metadata = {
        **current["metadata"],
        **{k: manifest["metadata"][k] for k in ("labels", "annotations") if k in manifest["metadata"]},
    }
    for key in ("labels", "annotations"):
        if key not in manifest["metadata"]:
            metadata.pop(key, None)
    body = {
        "apiVersion": current["apiVersion"],
        "kind": current["kind"],
        "metadata": metadata,
        "spec": manifest["spec"],
    }
    name, namespace = metadata["name"], metadata["namespace"]
    stored = api.replace_namespaced_custom_object(name=name, body=body, **kind.where(namespace))
    log(f"replaced {kind.name} {namespace}/{name}")
    return stored


def condition(obj: dict, kind: str) -> dict:
    """The status condition of type `kind`, or {}."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def summary(obj: dict) -> str:
    """Conditions (and the generation the controller has seen, where it says), as the log shows them."""
    status = obj.get("status") or {}
    text = (
        ", ".join(
            f"{c.get('type')}={c.get('status')}" + (f" ({c['reason']})" if c.get("reason") else "")
            for c in status.get("conditions") or []
        )
        or "no conditions yet"
    )
    if "observedGeneration" in status:
        text += f"; generation {status['observedGeneration']} of {obj['metadata'].get('generation')} observed"
    return text


def wait_for(
    api,
    kind: Kind,
    name: str,
    namespace: str,
    *,
    goal: str,
    reached: Callable[[dict], bool],
    timeout_s: float,
    poll_s: float = 10,
    log=print,
) -> dict:
    """Poll the object until `reached(object)`: the object. `reached` raises Failed when the object reports
    failure; `goal` says what is awaited, for the message when `timeout_s` passes first. Each change of the
    object's conditions goes to the log."""
    deadline, seen = time.monotonic() + timeout_s, None
    while True:
        obj = api.get_namespaced_custom_object(name=name, **kind.where(namespace))
        if summary(obj) != seen:
            seen = summary(obj)
            log(f"{kind.name} {namespace}/{name}: {seen}")
        if reached(obj):
            return obj
        if time.monotonic() >= deadline:
            raise Failed(f"{kind.name} {namespace}/{name} was not {goal} within {timeout_s:.0f} s ({seen})")
        time.sleep(poll_s)


# The object-store identity kfts's pods get: a Secret whose keys are these environment variables' names
# (kfts.core.storage reads them); the endpoint and region may be left out for AWS itself.
STORAGE_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": False,
    "AWS_SECRET_ACCESS_KEY": False,
    "AWS_ENDPOINT_URL": True,
    "AWS_REGION": True,
}  # name: optional


def secret_env(secret: str) -> list[dict]:
    """Container env entries taking STORAGE_SECRET_KEYS from the Secret `secret` (for specs that have `env`
    but no `envFrom`, such as a TrainJob's trainer)."""
    return [
        {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key, **({"optional": True} if optional else {})}},
        }
        for key, optional in STORAGE_SECRET_KEYS.items()
    ]
