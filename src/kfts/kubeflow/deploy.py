"""KServe manifests for kfts models: `kfts deploy render` and the pipelines' deploy step
(src/kfts/kubeflow/components/deploy.py).

Two ways to serve a kfts model artifact, both running `kfts serve` in the kfts predictor image
(kfts.kubeflow.images.predictor_image):

- through a ServingRuntime (render_serving_runtime): a platform team installs one ClusterServingRuntime
  (`kfts`, and `kfts-cuda` for GPU node pools) for the model format `kfts`; an InferenceService then only says
  `predictor.model.modelFormat.name: kfts` and the `storageUri` (render_inference_service without `image`);
- as a custom container (render_inference_service with `image`), which needs nothing installed beforehand.

Either way KServe's storage initializer downloads the `storageUri` to /mnt/models before the predictor starts,
with the credentials of `storage_secret` (the `serving.kserve.io/storageSecretName` annotation) or of the
secrets the service account lists. With `gpu` the predictor asks for `nvidia.com/gpu`, runs
`kfts serve --device cuda` and is placed on the GPU node pool: a node selector (when given) and tolerations for
the taint GPU node pools carry (GPU_TOLERATIONS). Every pod runs as Pod Security "restricted" asks
(kfts.kubeflow.podsecurity).

Deployment modes (the `serving.kserve.io/deploymentMode` annotation) have two names each: KServe 0.16.0
renamed RawDeployment to Standard and Serverless to Knative (kserve#4608). Earlier releases know only the old
names and give an unknown name the cluster's default mode; 0.16.0 to 0.20.0 read the old names as the new ones
but then refuse every update of an InferenceService created with one (its webhook compares the annotation
with the status, where the new name is written: kserve#5885). So the name written follows `kserve_version`.

Ports, by mode: Standard declares HTTP 8080 and gRPC 8081, which the predictor's Service exposes on 80 and
8081; Knative allows one port per container: HTTP 8080 (KServe's default, declared by nothing), or gRPC 8081
named `h2c` with `expose_grpc`. Without a mode the cluster's default applies and only HTTP is declared.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from kfts.core.errors import InputError
from kfts.kubeflow import podsecurity
from kfts.serving.admission import RESOURCES  # a predictor's requests and limits, by default

MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the storageUri
HTTP_PORT, GRPC_PORT = 8080, 8081  # kfts serve's defaults, and KServe's
MODEL_FORMAT = {"name": "kfts", "version": "1"}  # version: the artifact's FORMAT_VERSION (src/kfts/core/artifact.py)
PROTOCOL_VERSIONS = ["v1", "v2", "grpc-v2"]  # V1 REST, V2 REST, V2 gRPC: what kfts serve answers
RUNTIMES = {False: "kfts", True: "kfts-cuda"}  # the ServingRuntime names, by gpu
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
DEPLOYMENT_MODES = {
    "Standard": "standard",
    "RawDeployment": "standard",
    "Knative": "knative",
    "Serverless": "knative",
}  # every name KServe has had for its two modes
MODE_NAMES = {"standard": ("RawDeployment", "Standard"), "knative": ("Serverless", "Knative")}  # (old, new)
RENAMED_IN = (0, 16)  # the first KServe release with the new names (v0.16.0, kserve#4608)
ANNOTATION = "serving.kserve.io/deploymentMode"
STORAGE_SECRET_ANNOTATION = "serving.kserve.io/storageSecretName"  # KServe's default storageSecretNameAnnotation
LABELS = {"app.kubernetes.io/name": "kfts", "app.kubernetes.io/component": "predictor"}
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # Kubernetes' DNS-1123 label
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # Kubernetes' DNS-1123 subdomain
_LABEL_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")  # a label's name, or its value
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(\.\d+)?(-[0-9A-Za-z.]+)?$")
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")  # a Kubernetes quantity, unsigned


def render_serving_runtime(
    *,
    image: str,
    gpu: bool = False,
    name: str | None = None,
    namespace: str | None = None,
    deployment_mode: str | None = None,
    cpu: str = RESOURCES["cpu"],
    memory: str = RESOURCES["memory"],
) -> dict:
    """A ClusterServingRuntime for the model format `kfts` (a ServingRuntime with `namespace`), as a dict.

    Named RUNTIMES[gpu] unless `name` is given. The CPU runtime is auto-selected for `modelFormat: kfts`; the
    CUDA one only when an InferenceService names it (render_inference_service does with `gpu`). `cpu` and
    `memory` are the default requests and limits, which an InferenceService's resources replace.
    """
    name = name or RUNTIMES[gpu]
    check_name(name, "--name")
    check_names({"--namespace": namespace})
    mode = _mode(deployment_mode)
    container = {
        "name": "kserve-container",
        "image": image,
        "command": ["kfts", "serve"],
        "args": [
            f"--model-dir={MODEL_DIR}",
            "--model-name={{.Name}}",
            f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--device={'cuda' if gpu else 'cpu'}",
        ],
        **_ports(mode, expose_grpc=False),
        "resources": container_resources(cpu, memory, gpus=1 if gpu else 0),
    }
    if mode == "standard":  # Knative probes its one port itself, which an InferenceService may make gRPC's
        container["readinessProbe"] = _readiness()
    spec = {
        "annotations": {"prometheus.kserve.io/port": str(HTTP_PORT), "prometheus.kserve.io/path": "/metrics"},
        "supportedModelFormats": [{**MODEL_FORMAT, "autoSelect": not gpu, "priority": 1}],
        "protocolVersions": list(PROTOCOL_VERSIONS),
        "containers": [podsecurity.harden(container)],
        "volumes": [dict(podsecurity.SCRATCH)],
    }
    metadata = {"name": name, "labels": dict(LABELS)}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime" if namespace else "ClusterServingRuntime",
        "metadata": metadata,
        "spec": spec,
    }


def render_inference_service(
    *,
    name: str,
    model_uri: str,
    image: str | None = None,
    runtime: str | None = None,
    gpu: bool = False,
    gpus: int = 1,
    node_selector: dict | None = None,
    tolerations: list | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
    namespace: str | None = None,
    cpu: str = RESOURCES["cpu"],
    memory: str = RESOURCES["memory"],
    service_account: str | None = None,
    storage_secret: str | None = None,
    deployment_mode: str | None = None,
    kserve_version: str | None = None,
    expose_grpc: bool = False,
    canary_traffic_percent: int | None = None,
) -> dict:
    """An InferenceService (serving.kserve.io/v1beta1) serving the kfts model at `model_uri`, as a dict.

    Without `image`, the short form for the kfts ServingRuntime: `modelFormat: kfts`, the `runtime` when given
    (with `gpu` RUNTIMES[True] by default, since KServe would auto-select the CPU runtime), else KServe picks.
    With `image`, that image as a custom container. `tolerations` default to GPU_TOLERATIONS with `gpu` and to
    none without; `node_selector` picks the node pool (e.g. {"cloud.google.com/gke-accelerator": "nvidia-l4"}).
    `storage_secret` names the Secret KServe's storage initializer reads the model with (module docstring).
    `canary_traffic_percent` (Knative only) sends that share of the traffic to the new model and the rest to
    the last one that had it all, until the InferenceService is replaced without it.
    """
    check_name(name, "--name")
    check_names(
        {
            "--namespace": namespace,
            "--runtime": runtime,
            "--service-account": service_account,
            "--storage-secret": storage_secret,
        }
    )
    if len(name) > 45:
        raise InputError(f"--name {name!r} is longer than 45 characters (KServe adds suffixes)")
    if not model_uri:
        raise InputError("--model-uri is empty: give the model artifact's URI (gs://, s3://, pvc://, https://)")
    if "://" not in model_uri:  # KServe's storage initializer reads URIs only; a path means nothing in the pod
        raise InputError(
            f"--model-uri {model_uri} has no scheme: give the URI KServe downloads the model from "
            "(s3://bucket/model, gs://..., pvc://CLAIM/path, https://...), not a path on this machine"
        )
    check_uris({"--model-uri": model_uri})
    if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
        raise InputError(f"replicas must satisfy 0 <= min ({min_replicas}) <= max ({max_replicas}), max >= 1")
    if gpu and gpus < 1:
        raise InputError(f"--gpus must be at least 1, not {gpus}")
    if image is not None and runtime is not None:
        raise InputError("--runtime names a ServingRuntime; a custom container (--container) runs without one")
    mode = _mode(deployment_mode)
    if kserve_version is not None:
        parse_kserve_version(kserve_version)  # checked even when no mode needs it: a typo is a typo
    if expose_grpc and mode == "standard":
        raise InputError(
            f"--expose-grpc is for Knative: with deployment mode {deployment_mode} both HTTP and gRPC are exposed"
        )
    if canary_traffic_percent is not None:
        if mode != "knative":
            raise InputError(
                "--canary-traffic-percent needs --deployment-mode Knative: KServe splits traffic "
                "between an InferenceService's revisions under Knative only"
            )
        if not 1 <= canary_traffic_percent <= 99:
            raise InputError(f"--canary-traffic-percent {canary_traffic_percent}: from 1 to 99")

    resources = container_resources(cpu, memory, gpus=gpus if gpu else 0)
    ports = _ports(mode, expose_grpc)
    if image is None:
        model: dict[str, Any] = {"modelFormat": dict(MODEL_FORMAT)}
        runtime = runtime or (RUNTIMES[True] if gpu else None)
        if runtime:
            model["runtime"] = runtime
        model.update({"storageUri": model_uri, **ports, "resources": resources})
        predictor = {"minReplicas": min_replicas, "maxReplicas": max_replicas, "model": model}
    else:
        container = {
            "name": "kserve-container",  # the name KServe looks for the STORAGE_URI on
            "image": image,
            "command": ["kfts", "serve"],
            "args": [
                "--model-dir",
                MODEL_DIR,
                "--model-name",
                name,
                "--http-port",
                str(HTTP_PORT),
                "--grpc-port",
                str(GRPC_PORT),
                "--device",
                "cuda" if gpu else "cpu",
            ],
            "env": [{"name": "STORAGE_URI", "value": model_uri}],
            "ports": ports.get("ports", [_HTTP]),
            "resources": resources,
        }
        if not expose_grpc:  # Knative probes its one port itself, gRPC's here
            container["readinessProbe"] = _readiness()
        predictor = {
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "containers": [podsecurity.harden(container)],
            "volumes": [dict(podsecurity.SCRATCH)],
        }
    # pod-level too: KServe's storage initializer, which it adds to the pod, then runs as non-root as well
    predictor["securityContext"] = podsecurity.pod_context()
    if canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    if node_selector:
        predictor["nodeSelector"] = dict(node_selector)
    tolerations = GPU_TOLERATIONS if tolerations is None and gpu else tolerations
    if tolerations:
        predictor["tolerations"] = [dict(t) for t in tolerations]
    if service_account:
        predictor["serviceAccountName"] = service_account
    metadata = {"name": name, "labels": dict(LABELS)}
    if namespace:
        metadata["namespace"] = namespace
    annotations = {}
    if mode:
        annotations[ANNOTATION] = mode_name(mode, kserve_version)
    if storage_secret:
        annotations[STORAGE_SECRET_ANNOTATION] = storage_secret
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


def check_storage_secret(api, secret: str, namespace: str, model_uri: str, endpoint_url: str, log=print) -> None:
    """Refuse an s3:// model whose storage Secret does not tell KServe's storage initializer the endpoint that
    kfts's own steps use (`endpoint_url`, their AWS_ENDPOINT_URL): it would look for the model on AWS. Not
    checked when this pod may not read Secrets (said in the log)."""
    from kfts.kubeflow import kube

    if not model_uri.startswith("s3://") or not endpoint_url:
        return
    annotations = kube.secret_annotations(api, secret, namespace)
    if annotations is None:
        log(f"Secret {namespace}/{secret} not checked: this pod may not read Secrets")
        return
    wanted = s3_annotations(endpoint_url)
    usehttps = annotations.get("serving.kserve.io/s3-usehttps", "1")  # KServe's default: HTTPS
    if (
        annotations.get("serving.kserve.io/s3-endpoint") != wanted["serving.kserve.io/s3-endpoint"]
        or usehttps != wanted["serving.kserve.io/s3-usehttps"]
    ):
        raise InputError(
            f"Secret {namespace}/{secret} does not tell KServe's storage initializer the endpoint "
            f"{endpoint_url}, so it would look for {model_uri} on AWS: kubectl annotate secret -n "
            f"{namespace} {secret} --overwrite " + " ".join(f"{k}={v}" for k, v in wanted.items())
        )


def s3_annotations(endpoint_url: str) -> dict:
    """KServe's Secret annotations for an S3 endpoint URL (kserve pkg/credentials/s3/s3_secret.go): host:port
    with no scheme (releases before 0.17 add one themselves), and whether to use HTTPS."""
    from urllib.parse import urlsplit

    parsed = urlsplit(endpoint_url)
    return {
        "serving.kserve.io/s3-endpoint": parsed.netloc,
        "serving.kserve.io/s3-usehttps": "1" if parsed.scheme == "https" else "0",
    }


def mode_name(mode: str, kserve_version: str | None) -> str:
    """The name KServe `kserve_version` knows the mode by ("standard" or "knative"); the new one by default."""
    old, new = MODE_NAMES[mode]
    return new if kserve_version is None or parse_kserve_version(kserve_version) >= RENAMED_IN else old


def parse_kserve_version(text: str) -> tuple[int, int]:
    match = _VERSION.match(text.strip())
    if not match:
        raise InputError(f"--kserve-version {text!r}: expected a KServe release such as 0.15 or v0.16.0")
    return int(match[1]), int(match[2])


_HTTP = {"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}


def _ports(mode: str | None, expose_grpc: bool) -> dict:
    """The container's `ports` field for the deployment mode, or none (KServe's default: HTTP on 8080)."""
    if mode == "standard":  # Istio reads the protocol from the name: <protocol>[-<suffix>]
        return {"ports": [dict(_HTTP), {"name": "grpc-port", "containerPort": GRPC_PORT, "protocol": "TCP"}]}
    if expose_grpc:  # Knative's name for HTTP/2 without TLS, which it then routes as gRPC
        return {"ports": [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}]}
    return {}


def _mode(deployment_mode: str | None) -> str | None:
    if deployment_mode is None:
        return None
    if deployment_mode not in DEPLOYMENT_MODES:
        raise InputError(f"--deployment-mode {deployment_mode!r}: one of {', '.join(DEPLOYMENT_MODES)}")
    return DEPLOYMENT_MODES[deployment_mode]


def check_name(name: str, flag: str) -> None:
    """The name of an object whose name Kubernetes or its controller use in other objects' names and labels."""
    if not _DNS_LABEL.match(name) or len(name) > 63:
        raise InputError(
            f"{flag} {name!r} must be a DNS label: lowercase letters, digits and '-', starting with a letter"
        )


def check_names(names: dict[str, str | None]) -> None:
    """Names of other objects, by flag (None: not given), as the API server takes them: a --namespace is a
    DNS-1123 label, anything else a DNS-1123 subdomain."""
    for flag, name in names.items():
        pattern = _NAMESPACE if flag == "--namespace" else _OBJECT_NAME
        if name is not None and not pattern.fullmatch(name):
            raise InputError(
                f"{flag} {name!r} is not a Kubernetes {'namespace' if flag == '--namespace' else 'object'} name "
                f"(lower case letters, digits{'' if flag == '--namespace' else ', .'} and '-')"
            )


def check_uris(uris: dict[str, str]) -> None:
    """URIs by flag: each that has a scheme other than file:// must name its bucket (claim, host), which
    `s3://` or `s3:///key` do not: the pods would fail on them only once they run."""
    from urllib.parse import urlsplit

    for flag, uri in uris.items():
        scheme, sep, _ = uri.partition("://")
        if sep and scheme != "file" and not urlsplit(uri).netloc:
            raise InputError(f"{flag} {uri!r} names no bucket: give {scheme}://BUCKET/PATH")


def container_resources(cpu: str, memory: str, gpus: int) -> dict:
    """A container's requests and limits: the same CPU and memory for both (the Guaranteed class, which
    LimitRange and ResourceQuota namespaces admit), `gpus` GPUs."""
    check_quantity(cpu, "--cpu")
    check_quantity(memory, "--memory")
    resources = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = str(gpus)  # a quantity, as `kubectl` prints it
    return resources


def check_quantity(quantity: str, flag: str) -> re.Match:
    """`quantity` as a Kubernetes quantity above zero (the API server refuses a pod with any other), or an
    InputError naming `flag`."""
    match = _QUANTITY.match(quantity)
    if not match or not Decimal(match[1]):
        raise InputError(f"{flag} {quantity!r} is not a Kubernetes quantity above 0 (e.g. 2, 500m, 8Gi)")
    return match


def _readiness() -> dict:
    """Ready once the model is loaded and warmed up (kfts serve listens only then, and KServe answers 503
    before its models are ready)."""
    return {
        "httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
        "initialDelaySeconds": 5,
        "periodSeconds": 5,
        "failureThreshold": 3,
    }


# -- rollout: the pipelines' deploy step -------------------------------------------------------------------

STARTING = {"MinimumReplicasUnavailable"}  # Ready=False while a new Deployment's first pods start, not a failure


def apply_inference_service(manifest: dict, *, api=None, timeout_s: float = 1800, poll_s: float = 10, log=print) -> str:
    """Create or replace the InferenceService and wait until KServe reports the new spec rolled out: its URL.

    When the new spec fails (KServe reports it not Ready, or `timeout_s` passes first) and it replaced one,
    the replaced spec is put back, which KServe had kept serving meanwhile (a Deployment keeps its old pods
    until new ones are ready; Knative keeps the traffic on the last ready revision), and kfts.kubeflow.kube.Failed
    says so. (The pipelines' deploy step.)"""
    from kfts.kubeflow import kube

    api = api or kube.custom_objects()
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    previous = kube.get(api, kube.INFERENCE_SERVICE, name, namespace)
    if previous is None:
        stored = kube.create(api, kube.INFERENCE_SERVICE, manifest, log=log)
    else:
        stored = kube.replace(api, kube.INFERENCE_SERVICE, previous, manifest, log=log)
    try:
        ready = _await_generation(api, stored, timeout_s=timeout_s, poll_s=poll_s, log=log)
    except kube.Failed as e:
        if previous is None:
            raise kube.Failed(
                f"{e}. There was no InferenceService {namespace}/{name} before: the failed one is "
                "left for inspection (kubectl describe inferenceservice)"
            ) from None
        raise kube.Failed(f"{e}. {_restore(api, previous, timeout_s=timeout_s, poll_s=poll_s, log=log)}") from None
    url = (ready.get("status") or {}).get("url", "")
    log(f"ready at {url}")
    return url


def _await_generation(api, stored: dict, *, timeout_s: float, poll_s: float, log) -> dict:
    """Wait until KServe has rolled out the generation `stored` (the object as created or replaced) has."""
    from kfts.kubeflow import kube

    generation, name, namespace = (
        stored["metadata"]["generation"],
        stored["metadata"]["name"],
        stored["metadata"]["namespace"],
    )
    return kube.wait_for(
        api,
        kube.INFERENCE_SERVICE,
        name,
        namespace,
        goal=f"Ready at generation {generation}",
        reached=lambda isvc: rolled_out(isvc, generation, log),
        timeout_s=timeout_s,
        poll_s=poll_s,
        log=log,
    )


def rolled_out(isvc: dict, generation: int, log=print) -> bool:
    """Whether KServe reports `generation` of the InferenceService serving; raises kfts.kubeflow.kube.Failed when it
    reports it failed.

    KServe (pkg/apis/serving/v1beta1/inference_service_status.go) copies status.observedGeneration from the
    predictor's Deployment (Standard) or Knative Service (Knative), which follow the InferenceService's spec
    changes one for one, and sets Ready from theirs, so Ready of a lower observedGeneration is the previous
    spec's. Under Standard a Deployment stays Available on its old pods during a rollout: from KServe 0.16
    the PredictorReady reason NewReplicaSetAvailable says the new pods took over; before, nothing does."""
    from kfts.kubeflow import kube

    status = isvc.get("status") or {}
    if status.get("observedGeneration", 0) < generation:
        return False
    ready = kube.condition(isvc, "Ready")
    where = f"InferenceService {isvc['metadata']['namespace']}/{isvc['metadata']['name']}"
    if ready.get("status") == "False" and ready.get("reason") not in STARTING:
        raise kube.Failed(
            f"{where} generation {generation} failed: {ready.get('reason', '')}: {ready.get('message', '')}"
        )
    if ready.get("status") != "True":
        return False
    mode = status.get("deploymentMode")
    if mode == "RawDeployment":
        log(
            f"{where}: KServe before 0.16 does not report a RawDeployment's rollout; its Ready may still be the "
            f"previous pods' (kubectl rollout status deployment/{isvc['metadata']['name']}-predictor)"
        )
    return mode != "Standard" or kube.condition(isvc, "PredictorReady").get("reason") == "NewReplicaSetAvailable"


def _restore(api, previous: dict, *, timeout_s: float, poll_s: float, log) -> str:
    """Put `previous` (the object as it was before the failed replace) back: what happened, in words."""
    from kfts.kubeflow import kube

    name, namespace = previous["metadata"]["name"], previous["metadata"]["namespace"]
    current = kube.get(api, kube.INFERENCE_SERVICE, name, namespace)
    if current is None:  # deleted since it failed: there is nothing to put the previous spec on
        return f"InferenceService {namespace}/{name} is gone (deleted since): its previous spec is not restored"
    stored = kube.replace(api, kube.INFERENCE_SERVICE, current, previous, log=log)
    what = (
        f"The previous spec of InferenceService {namespace}/{name} is restored (generation "
        f"{stored['metadata']['generation']}): the model it served is left serving"
    )
    try:
        _await_generation(api, stored, timeout_s=timeout_s, poll_s=poll_s, log=log)
    except kube.Failed as e:
        return f"{what}, but it is not Ready again ({e})"
    return what + ", Ready again"


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


def parse_node_selector(text: str) -> tuple[str, str]:
    """LABEL=VALUE of --node-selector, as the API server takes a label."""
    key, value = parse_key_value(text, "--node-selector")
    _check_label(key, value, f"--node-selector {text!r}")
    return key, value


def _check_label(key: str, value: str, where: str) -> None:
    """A label's (or taint's) key and value by Kubernetes' rules (apimachinery's IsQualifiedName and
    IsValidLabelValue): a pod naming another never schedules, or is refused."""
    prefix, _, name = key.rpartition("/")
    if not _LABEL_PART.fullmatch(name) or prefix and not _OBJECT_NAME.fullmatch(prefix):
        raise InputError(f"{where}: {key!r} is not a label key ([PREFIX/]NAME: up to 63 letters, digits, '-_.')")
    if value and not _LABEL_PART.fullmatch(value):
        raise InputError(f"{where}: {value!r} is not a label value (up to 63 letters, digits, '-_.', or empty)")


def parse_toleration(text: str) -> dict:
    """KEY[=VALUE][:EFFECT], as kubectl taint writes taints: Equal with a value, else Exists."""
    spec, _, effect = text.partition(":")
    key, sep, value = spec.partition("=")
    if not key:
        raise InputError(f"--toleration {text!r}: expected KEY[=VALUE][:EFFECT]")
    _check_label(key, value, f"--toleration {text!r}")
    if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise InputError(f"--toleration {text!r}: effect must be NoSchedule, PreferNoSchedule or NoExecute")
    toleration = {"key": key, "operator": "Equal", "value": value} if sep else {"key": key, "operator": "Exists"}
    if effect:
        toleration["effect"] = effect
    return toleration
