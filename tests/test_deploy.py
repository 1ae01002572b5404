"""InferenceService rendering: valid against KServe's CRD schema, loadable by the kserve SDK, and what it says."""

from __future__ import annotations

import datetime

import jsonschema
import kubernetes.client.models
import kserve.models
import pytest
import yaml
from conftest import ROOT, run_cli

from kfts.cli import main
from kfts.deploy import render_inference_service
from kfts.errors import InputError

CRD = ROOT.parent / "shared" / "schemas" / "kserve-inferenceservice-crd.yaml"


@pytest.fixture(scope="module")
def isvc_schema() -> jsonschema.protocols.Validator:
    """A validator for the CRD's OpenAPI v3 schema (checked and built once: the schema is large)."""
    if not CRD.is_file():
        pytest.skip(f"{CRD} is not there (CI puts ../shared beside the project)")
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 40k lines
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = version["schema"]["openAPIV3Schema"]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


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
    cls = getattr(kserve.models, klass, None) or getattr(kubernetes.client.models, klass)
    keys = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = set(data) - set(keys)
    assert not unknown, f"{klass} has no field {sorted(unknown)}"
    return cls(**{keys[k]: sdk_object(v, cls.openapi_types[keys[k]]) for k, v in data.items()})


def check(manifest: dict, validator):
    validator.validate(manifest)
    return sdk_object(manifest, "V1beta1InferenceService")


def test_cpu_manifest_is_valid_and_complete(isvc_schema):
    manifest = render_inference_service(name="ecg-classifier", model_uri="gs://bucket/models/ecg",
                                        image="registry.example/kfts:1-predictor", namespace="ml",
                                        min_replicas=0, max_replicas=3, service_account="kfts-reader")
    isvc = check(manifest, isvc_schema)
    predictor = isvc.spec.predictor
    (container,) = predictor.containers
    assert (isvc.metadata.name, isvc.metadata.namespace) == ("ecg-classifier", "ml")
    assert (predictor.min_replicas, predictor.max_replicas) == (0, 3)
    assert predictor.service_account_name == "kfts-reader"
    assert container.name == "kserve-container" and container.image == "registry.example/kfts:1-predictor"
    assert container.command == ["kfts", "serve"]
    assert container.args[container.args.index("--model-dir") + 1] == "/mnt/models"
    assert container.args[container.args.index("--model-name") + 1] == "ecg-classifier"
    assert {e.name: e.value for e in container.env}["STORAGE_URI"] == "gs://bucket/models/ecg"
    assert container.readiness_probe.http_get.path == "/v1/models/ecg-classifier"
    assert container.readiness_probe.http_get.port == container.ports[0].container_port == 8080
    assert "nvidia.com/gpu" not in container.resources.limits
    assert predictor.tolerations is None and predictor.node_selector is None
    assert container.security_context.run_as_non_root is True


def test_gpu_manifest_targets_the_gpu_node_pool(isvc_schema):
    manifest = render_inference_service(
        name="detector", model_uri="s3://models/lstm", image="img", gpu=True, gpus=2,
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}, cpu="4", memory="16Gi")
    isvc = check(manifest, isvc_schema)
    predictor = isvc.spec.predictor
    (container,) = predictor.containers
    assert container.resources.limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert predictor.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert [(t.key, t.operator, t.effect) for t in predictor.tolerations] == [("nvidia.com/gpu", "Exists",
                                                                               "NoSchedule")]
    assert container.args[container.args.index("--device") + 1] == "cuda"


def test_schema_check_has_teeth(isvc_schema):
    manifest = render_inference_service(name="m", model_uri="gs://b/m", image="img")
    manifest["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        isvc_schema.validate(manifest)
    manifest = render_inference_service(name="m", model_uri="gs://b/m", image="img")
    manifest["spec"]["predictor"]["containers"][0]["storageUri"] = "gs://b/m"
    with pytest.raises(AssertionError, match="storageUri"):
        sdk_object(manifest, "V1beta1InferenceService")


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Bad_Name"}, "DNS label"),
    ({"model_uri": ""}, "model-uri"),
    ({"min_replicas": 3, "max_replicas": 2}, "replicas"),
    ({"gpu": True, "gpus": 0}, "gpus"),
])
def test_bad_arguments_are_input_errors(kwargs, message):
    args = {"name": "m", "model_uri": "gs://b/m", "image": "img", **kwargs}
    with pytest.raises(InputError, match=message):
        render_inference_service(**args)


def test_cli_writes_yaml(tmp_path, isvc_schema, monkeypatch):
    monkeypatch.setenv("KFTS_IMAGE", "registry.example/kfts:9")
    out = tmp_path / "isvc.yaml"
    assert main(["deploy", "render", "--model-uri", "pvc://models/it", "--name", "it", "--gpu",
                 "--node-selector", "pool=gpu", "--toleration", "dedicated=ml:NoSchedule",
                 "--max-replicas", "4", "--output", str(out)]) == 0
    manifest = yaml.safe_load(out.read_text())
    isvc = check(manifest, isvc_schema)
    assert isvc.spec.predictor.containers[0].image == "registry.example/kfts:9-predictor-cuda"
    assert isvc.spec.predictor.node_selector == {"pool": "gpu"}
    assert [(t.key, t.operator, t.value, t.effect) for t in isvc.spec.predictor.tolerations] == [
        ("dedicated", "Equal", "ml", "NoSchedule")]
    assert isvc.spec.predictor.max_replicas == 4


def test_cli_user_mistake_is_one_line(tmp_path):
    out = tmp_path / "isvc.yaml"
    result = run_cli("deploy", "render", "--model-uri", "gs://b/m", "--name", "it",
                     "--toleration", "key:Sometimes", "--output", out)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --toleration 'key:Sometimes'") and result.stderr.count("\n") == 1
    assert not out.exists()
