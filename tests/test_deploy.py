"""KServe manifests (kfts.deploy, `kfts deploy render`): the ServingRuntime and ClusterServingRuntime for the model
format kfts, the short InferenceService that uses them and the custom-container one, each valid against KServe's
CRD schema (../shared/schemas), loadable by the kserve SDK, and saying what it should."""

from __future__ import annotations

import datetime
import re
import shlex

import jsonschema
import kubernetes.client.models
import kserve.models
import pytest
import yaml
from conftest import ROOT, crd_validator, run_cli

from kfts.cli import main
from kfts.deploy import (GPU_TOLERATIONS, MODEL_FORMAT, render_inference_service, render_serving_runtime)
from kfts.errors import InputError

CRDS = {"InferenceService": ("kserve-inferenceservice-crd.yaml", "v1beta1", "V1beta1InferenceService"),
        "ServingRuntime": ("kserve-servingruntime-crd.yaml", "v1alpha1", "V1alpha1ServingRuntime"),
        "ClusterServingRuntime": ("kserve-clusterservingruntime-crd.yaml", "v1alpha1",
                                  "V1alpha1ClusterServingRuntime")}


def validator(kind: str):
    file, version, _ = CRDS[kind]
    return crd_validator(file, version)


def sdk_object(data, klass: str):
    """Build the kserve SDK object (kubernetes client classes inside) from a manifest, refusing unknown keys."""
    if klass.startswith("list["):
        return [sdk_object(item, klass[5:-1]) for item in data]
    if klass.startswith("dict("):
        value_type = klass[5:-1].split(", ", 1)[1]
        return {k: sdk_object(v, value_type) for k, v in data.items()}
    if klass in ("str", "int", "bool", "float", "object"):
        assert klass == "object" or isinstance(data, {"str": str, "int": int, "bool": bool, "float": float}[klass]), \
            f"{data!r} is not {klass}"
        return data
    if klass == "datetime":
        return datetime.datetime.fromisoformat(data)
    cls = getattr(kserve.models, klass, None) or getattr(kubernetes.client.models, klass, None)
    if cls is None:  # a type the SDK names but does not define (V1beta1MetricQuantity): the CRD checked it
        return data
    keys = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = set(data) - set(keys)
    assert not unknown, f"{klass} has no field {sorted(unknown)}"
    return cls(**{keys[k]: sdk_object(v, cls.openapi_types[keys[k]]) for k, v in data.items()})


def check(manifest: dict):
    """Valid against the CRD of its kind and loadable by the SDK: the SDK object."""
    validator(manifest["kind"]).validate(manifest)
    return sdk_object(manifest, CRDS[manifest["kind"]][2])


def flags(args: list[str]) -> dict[str, str]:
    """--key=value arguments as a dict."""
    return dict(a[2:].split("=", 1) for a in args)


# -- ServingRuntime -------------------------------------------------------------------------------------------------

def test_cluster_serving_runtime_for_the_kfts_format():
    runtime = check(render_serving_runtime(image="registry.example/kfts:1-predictor", deployment_mode="Standard"))
    assert runtime.kind == "ClusterServingRuntime" and runtime.metadata.name == "kfts"
    assert runtime.metadata.namespace is None
    spec = runtime.spec
    (fmt,) = spec.supported_model_formats
    assert (fmt.name, fmt.version, fmt.auto_select) == ("kfts", "1", True)
    assert spec.protocol_versions == ["v1", "v2", "grpc-v2"]
    (container,) = spec.containers
    assert container.name == "kserve-container" and container.image == "registry.example/kfts:1-predictor"
    assert container.command == ["kfts", "serve"]
    args = flags(container.args)
    assert args == {"model-dir": "/mnt/models", "model-name": "{{.Name}}", "http-port": "8080",
                    "grpc-port": "8081", "device": "cpu"}
    assert [(p.name, p.container_port) for p in container.ports] == [("http1", 8080), ("grpc-port", 8081)]
    assert container.readiness_probe.http_get.path == "/v2/health/ready"
    assert container.security_context.run_as_non_root is True
    assert spec.annotations == {"prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics"}


def test_cuda_runtime_is_picked_by_name_only():
    runtime = check(render_serving_runtime(image="img-cuda", gpu=True))
    assert runtime.metadata.name == "kfts-cuda"
    assert flags(runtime.spec.containers[0].args)["device"] == "cuda"
    assert runtime.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert runtime.spec.supported_model_formats[0].auto_select is False  # a CPU model never lands on it


def test_namespaced_serving_runtime():
    runtime = check(render_serving_runtime(image="img", namespace="ml", name="kfts-team"))
    assert (runtime.kind, runtime.metadata.namespace, runtime.metadata.name) == ("ServingRuntime", "ml", "kfts-team")


def test_knative_runtime_leaves_the_one_port_to_the_inference_service():
    (container,) = check(render_serving_runtime(image="img", deployment_mode="Knative")).spec.containers
    assert container.ports is None and container.readiness_probe is None  # KServe's default: HTTP on 8080


def test_the_model_format_version_is_the_artifacts():
    from kfts.artifact import FORMAT_VERSION
    assert MODEL_FORMAT["version"] == str(FORMAT_VERSION)


# -- InferenceService -----------------------------------------------------------------------------------------------

def test_short_inference_service_for_the_runtime():
    isvc = check(render_inference_service(name="ecg-classifier", model_uri="gs://bucket/models/ecg", namespace="ml",
                                          min_replicas=0, max_replicas=3, service_account="kfts-reader",
                                          deployment_mode="Standard"))
    predictor = isvc.spec.predictor
    assert (isvc.metadata.name, isvc.metadata.namespace) == ("ecg-classifier", "ml")
    assert isvc.metadata.annotations == {"serving.kserve.io/deploymentMode": "Standard"}
    assert (predictor.min_replicas, predictor.max_replicas) == (0, 3)
    assert predictor.service_account_name == "kfts-reader"
    assert predictor.containers is None
    model = predictor.model
    assert (model.model_format.name, model.model_format.version) == ("kfts", "1")
    assert model.runtime is None  # KServe picks the auto-selected kfts runtime
    assert model.storage_uri == "gs://bucket/models/ecg"
    assert model.resources.limits == {"cpu": "1", "memory": "2Gi"}
    assert [(p.name, p.container_port) for p in model.ports] == [("http1", 8080), ("grpc-port", 8081)]
    assert predictor.tolerations is None and predictor.node_selector is None


def test_gpu_inference_service_on_the_gpu_node_pool():
    isvc = check(render_inference_service(name="detector", model_uri="s3://models/lstm", gpu=True, gpus=2,
                                          node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
                                          cpu="4", memory="16Gi", min_replicas=1, max_replicas=4))
    predictor = isvc.spec.predictor
    assert predictor.model.runtime == "kfts-cuda"
    assert predictor.model.resources.limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert predictor.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert [t.to_dict() for t in predictor.tolerations] == [
        {**t, "toleration_seconds": None, "value": None} for t in GPU_TOLERATIONS]
    assert (predictor.min_replicas, predictor.max_replicas) == (1, 4)
    assert isvc.metadata.annotations is None  # the cluster's deployment mode


def test_named_runtime_and_knative_grpc():
    isvc = check(render_inference_service(name="m", model_uri="gs://b/m", runtime="kfts-team",
                                          deployment_mode="Knative", expose_grpc=True))
    model = isvc.spec.predictor.model
    assert model.runtime == "kfts-team"
    assert [(p.name, p.container_port) for p in model.ports] == [("h2c", 8081)]  # Knative's name for gRPC
    assert isvc.metadata.annotations == {"serving.kserve.io/deploymentMode": "Knative"}
    plain = check(render_inference_service(name="m", model_uri="gs://b/m", deployment_mode="Serverless"))
    assert plain.spec.predictor.model.ports is None  # HTTP on KServe's default port


def test_custom_container_inference_service():
    isvc = check(render_inference_service(name="ecg", model_uri="gs://bucket/models/ecg", image="img:1-predictor",
                                          gpu=True))
    predictor = isvc.spec.predictor
    (container,) = predictor.containers
    assert predictor.model is None
    assert container.name == "kserve-container" and container.image == "img:1-predictor"
    assert container.command == ["kfts", "serve"]
    assert container.args[container.args.index("--model-name") + 1] == "ecg"
    assert container.args[container.args.index("--device") + 1] == "cuda"
    assert {e.name: e.value for e in container.env}["STORAGE_URI"] == "gs://bucket/models/ecg"
    assert container.readiness_probe.http_get.port == container.ports[0].container_port == 8080
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert [t.key for t in predictor.tolerations] == ["nvidia.com/gpu"]


def test_schema_check_has_teeth():
    manifest = render_inference_service(name="m", model_uri="gs://b/m")
    manifest["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        check(manifest)
    runtime = render_serving_runtime(image="img")
    runtime["spec"]["supportedModelFormats"][0]["autoSelect"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        check(runtime)
    manifest = render_inference_service(name="m", model_uri="gs://b/m", image="img")
    manifest["spec"]["predictor"]["containers"][0]["storageUri"] = "gs://b/m"
    with pytest.raises(AssertionError, match="storageUri"):
        sdk_object(manifest, "V1beta1InferenceService")


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Bad_Name"}, "DNS label"),
    ({"name": "m" * 46}, "45 characters"),
    ({"model_uri": ""}, "model-uri"),
    ({"min_replicas": 3, "max_replicas": 2}, "replicas"),
    ({"gpu": True, "gpus": 0}, "gpus"),
    ({"image": "img", "runtime": "kfts"}, "custom container"),
    ({"deployment_mode": "Fast"}, "one of Standard"),
    ({"deployment_mode": "Standard", "expose_grpc": True}, "for Knative"),
])
def test_bad_arguments_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        render_inference_service(**{"name": "m", "model_uri": "gs://b/m", **kwargs})


# -- the command line -----------------------------------------------------------------------------------------------

def test_cli_writes_the_inference_service(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTS_IMAGE", "registry.example/kfts:9")
    out = tmp_path / "isvc.yaml"
    assert main(["deploy", "render", "--model-uri", "pvc://models/it", "--name", "it", "--gpu",
                 "--node-selector", "pool=gpu", "--toleration", "dedicated=ml:NoSchedule",
                 "--max-replicas", "4", "--deployment-mode", "RawDeployment", "--output", str(out)]) == 0
    isvc = check(yaml.safe_load(out.read_text()))
    assert isvc.spec.predictor.model.runtime == "kfts-cuda"
    assert isvc.spec.predictor.node_selector == {"pool": "gpu"}
    assert [(t.key, t.operator, t.value, t.effect) for t in isvc.spec.predictor.tolerations] == [
        ("dedicated", "Equal", "ml", "NoSchedule")]
    assert isvc.spec.predictor.max_replicas == 4
    assert main(["deploy", "render", "--model-uri", "pvc://models/it", "--name", "it", "--container",
                 "--output", str(out)]) == 0
    assert check(yaml.safe_load(out.read_text())).spec.predictor.containers[0].image == \
        "registry.example/kfts:9-predictor"


def test_cli_writes_the_runtimes(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTS_IMAGE", "registry.example/kfts:9")
    out = tmp_path / "runtime.yaml"
    assert main(["deploy", "render", "--kind", "ClusterServingRuntime", "--gpu", "--output", str(out)]) == 0
    runtime = check(yaml.safe_load(out.read_text()))
    assert runtime.metadata.name == "kfts-cuda"
    assert runtime.spec.containers[0].image == "registry.example/kfts:9-predictor-cuda"
    assert main(["deploy", "render", "--kind", "ServingRuntime", "--namespace", "ml", "--output", str(out)]) == 0
    runtime = check(yaml.safe_load(out.read_text()))
    assert (runtime.kind, runtime.metadata.namespace) == ("ServingRuntime", "ml")
    assert runtime.spec.containers[0].image == "registry.example/kfts:9-predictor"


@pytest.mark.parametrize("args, message", [
    (["--model-uri", "gs://b/m", "--name", "it", "--toleration", "key:Sometimes"], "--toleration 'key:Sometimes'"),
    (["--name", "it"], "--model-uri is required"),
    (["--model-uri", "gs://b/m", "--name", "it", "--image", "img"], "--image goes with --container"),
    (["--kind", "ServingRuntime"], "--kind ServingRuntime needs --namespace"),
    (["--kind", "ClusterServingRuntime", "--model-uri", "gs://b/m"], "--model-uri is for an InferenceService"),
    (["--kind", "ClusterServingRuntime", "--toleration", "a"], "--toleration is for an InferenceService"),
])
def test_cli_user_mistake_is_one_line(tmp_path, args, message):
    out = tmp_path / "out.yaml"
    result = run_cli("deploy", "render", *args, "--output", out)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert not out.exists()


# -- the example manifests in deploy/ -------------------------------------------------------------------------------

DEPLOY = ROOT / "deploy"
RENDERED = sorted(p for p in DEPLOY.glob("*.yaml") if p.read_text().startswith("# kfts deploy render "))


def test_there_are_rendered_examples():
    assert {p.name for p in RENDERED} >= {"runtime-kfts.yaml", "runtime-kfts-cuda.yaml", "inferenceservice.yaml",
                                          "inferenceservice-gpu.yaml"}


@pytest.mark.parametrize("example", RENDERED, ids=[p.name for p in RENDERED])
def test_rendered_examples_are_what_their_command_writes(example, tmp_path, monkeypatch):
    monkeypatch.delenv("KFTS_IMAGE", raising=False)  # the default image names, as in the examples
    command = shlex.split(example.read_text().splitlines()[0][len("# "):])
    out = tmp_path / "out.yaml"
    assert main([*command[1:], "--output", str(out)]) == 0
    assert yaml.safe_load(example.read_text()) == yaml.safe_load(out.read_text())
    check(yaml.safe_load(out.read_text()))


def kfts_metric_names() -> set[str]:
    """The series names the predictor's metrics (kfts.serving.metrics) put on /metrics."""
    from prometheus_client.metrics import MetricWrapperBase

    from kfts.serving import metrics
    names = set()
    for family in (m.describe()[0] for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)):
        names |= {family.name} | ({family.name + s for s in ("_sum", "_count", "_bucket")}
                                  if family.type == "histogram" else set())
    return names


def queried_metrics(query: str) -> set[str]:
    return {name for name in re.findall(r"[a-z_]+(?=[{\[])", query) if name.startswith("kfts_")}


def test_keda_inference_service_scales_on_the_predictors_metrics():
    manifest = yaml.safe_load((DEPLOY / "inferenceservice-keda.yaml").read_text())
    isvc = check(manifest)
    assert isvc.metadata.annotations["serving.kserve.io/autoscalerClass"] == "keda"
    queries = [m.external.metric.query for m in isvc.spec.predictor.auto_scaling.metrics]
    assert queries and all(queried_metrics(q) and queried_metrics(q) <= kfts_metric_names() for q in queries)
    assert all(f'model_name="{isvc.metadata.name}"' in q for q in queries)
    # otherwise the InferenceService of deploy/inferenceservice.yaml
    plain = yaml.safe_load((DEPLOY / "inferenceservice.yaml").read_text())
    del manifest["spec"]["predictor"]["autoScaling"]
    for key in ("serving.kserve.io/autoscalerClass", "serving.kserve.io/enable-prometheus-scraping"):
        del manifest["metadata"]["annotations"][key]
    assert manifest == plain


def test_keda_scaled_object_targets_the_predictor_deployment():
    scaled = yaml.safe_load((DEPLOY / "keda-scaledobject.yaml").read_text())
    isvc = yaml.safe_load((DEPLOY / "inferenceservice.yaml").read_text())
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"] == {"name": isvc["metadata"]["name"] + "-predictor"}  # KServe's name
    assert scaled["spec"]["maxReplicaCount"] == isvc["spec"]["predictor"]["maxReplicas"]
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "prometheus" and float(trigger["metadata"]["threshold"]) > 0
        assert queried_metrics(trigger["metadata"]["query"]) <= kfts_metric_names()
        assert queried_metrics(trigger["metadata"]["query"])
