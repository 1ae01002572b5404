"""KServe InferenceService manifests for a kfts model: `kfts deploy render` and the pipelines' deploy step.

The predictor is a custom container (the kfts predictor image) running `kfts serve`. KServe's storage
initializer downloads the model artifact from the container's STORAGE_URI to /mnt/models before it starts
(how KServe gives a custom predictor its storageUri). With `gpu`, the container asks for `nvidia.com/gpu`
and is placed on the GPU node pool: a node selector (when given) and tolerations for the taint GPU node
pools carry (by default `nvidia.com/gpu`, as GKE, AKS and the NVIDIA GPU operator set it).
"""

from __future__ import annotations

import re

from kfts.errors import InputError

MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the storageUri
HTTP_PORT = 8080
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def render_inference_service(*, name: str, model_uri: str, image: str, gpu: bool = False, gpus: int = 1,
                             node_selector: dict | None = None, tolerations: list | None = None,
                             min_replicas: int = 1, max_replicas: int = 1, namespace: str | None = None,
                             cpu: str = "1", memory: str = "2Gi", service_account: str | None = None) -> dict:
    """An InferenceService (serving.kserve.io/v1beta1) serving the kfts model at `model_uri`, as a dict.

    `tolerations` default to GPU_TOLERATIONS with `gpu` and to none without; `node_selector` picks the node
    pool (for example {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}).
    """
    if not _DNS_LABEL.match(name) or len(name) > 45:
        raise InputError(f"--name {name!r} must be a DNS label: lowercase letters, digits and '-', starting "
                         "with a letter, at most 45 characters (KServe adds suffixes)")
    if not model_uri:
        raise InputError("--model-uri is empty: give the model artifact's URI (gs://, s3://, pvc://, https://)")
    if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
        raise InputError(f"replicas must satisfy 0 <= min ({min_replicas}) <= max ({max_replicas}), max >= 1")
    if gpu and gpus < 1:
        raise InputError(f"--gpus must be at least 1, not {gpus}")

    resources = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = str(gpus)  # a quantity, as `kubectl` prints it
    container = {
        "name": "kserve-container",  # the name KServe looks for the STORAGE_URI on
        "image": image,
        "command": ["kfts", "serve"],
        "args": ["--model-dir", MODEL_DIR, "--model-name", name, "--http-port", str(HTTP_PORT),
                 "--device", "cuda" if gpu else "cpu"],
        "env": [{"name": "STORAGE_URI", "value": model_uri}],
        "ports": [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": resources,
        # ready once the model is loaded and warmed up (KServe answers 503 until then)
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{name}", "port": HTTP_PORT},
                           "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 3},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    predictor = {"minReplicas": min_replicas, "maxReplicas": max_replicas, "containers": [container]}
    if node_selector:
        predictor["nodeSelector"] = dict(node_selector)
    tolerations = GPU_TOLERATIONS if tolerations is None and gpu else tolerations
    if tolerations:
        predictor["tolerations"] = [dict(t) for t in tolerations]
    if service_account:
        predictor["serviceAccountName"] = service_account
    metadata = {"name": name, "labels": {"app.kubernetes.io/name": "kfts", "app.kubernetes.io/component":
                                         "predictor"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}


def to_yaml(manifest: dict) -> str:
    import yaml
    return yaml.safe_dump(manifest, sort_keys=False)


# -- command-line forms of the node-pool settings, shared by `kfts deploy` and `kfts pipeline` ------------

def parse_key_value(text: str, flag: str) -> tuple[str, str]:
    """NAME=VALUE from a command-line flag (--node-selector, --param, --search)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError(f"{flag} {text!r}: expected KEY=VALUE")
    return key, value


def parse_toleration(text: str) -> dict:
    """KEY[=VALUE][:EFFECT], as kubectl taint writes taints: Equal with a value, else Exists."""
    spec, _, effect = text.partition(":")
    key, sep, value = spec.partition("=")
    if not key:
        raise InputError(f"--toleration {text!r}: expected KEY[=VALUE][:EFFECT]")
    if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise InputError(f"--toleration {text!r}: effect must be NoSchedule, PreferNoSchedule or NoExecute")
    toleration = {"key": key, "operator": "Equal", "value": value} if sep else {"key": key, "operator": "Exists"}
    if effect:
        toleration["effect"] = effect
    return toleration
