"""KServe manifests (kfts.kubeflow.deploy, `kfts deploy render`): the ServingRuntime and ClusterServingRuntime for the
model format kfts, the short InferenceService that uses them and the custom-container one, each valid against KServe's
CRD schema (../shared/schemas), loadable by the kserve SDK, and saying what it should."""

from __future__ import annotations

import datetime
import re
import shlex
from unittest import mock

import jsonschema
import kserve.models
import kubernetes.client.models
import pytest
import yaml

from kfts.cli import main
from kfts.core.errors import InputError
from kfts.kubeflow import kube
from kfts.kubeflow.deploy import (
    GPU_TOLERATIONS,
    MODEL_FORMAT,
    apply_inference_service,
    check_storage_secret,
    render_inference_service,
    render_serving_runtime,
    s3_annotations,
)

from helpers import ROOT, crd_validator, run_cli
from kube_standin import PATH, KServe, KubeStandIn

CRDS = {
    "InferenceService": ("kserve-inferenceservice-crd.yaml", "v1beta1", "V1beta1InferenceService"),
    "ServingRuntime": ("kserve-servingruntime-crd.yaml", "v1alpha1", "V1alpha1ServingRuntime"),
    "ClusterServingRuntime": ("kserve-clusterservingruntime-crd.yaml", "v1alpha1", "V1alpha1ClusterServingRuntime"),
}


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
        assert klass == "object" or isinstance(data, {"str": str, "int": int, "bool": bool, "float": float}[klass]), (
            f"{data!r} is not {klass}"
        )
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


TRAINER_CRDS = {"ClusterTrainingRuntime": "trainer-clustertrainingruntime-crd.yaml"}


def check(manifest: dict):
    """Valid against the CRD of its kind and, for KServe's, loadable by the SDK: the SDK object."""
    if manifest["kind"] in TRAINER_CRDS:
        return crd_validator(TRAINER_CRDS[manifest["kind"]], "v1alpha1").validate(manifest)
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
    assert args == {
        "model-dir": "/mnt/models",
        "model-name": "{{.Name}}",
        "http-port": "8080",
        "grpc-port": "8081",
        "device": "cpu",
    }
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
    from kfts.core.artifact import FORMAT_VERSION

    assert MODEL_FORMAT["version"] == str(FORMAT_VERSION)


# -- InferenceService -----------------------------------------------------------------------------------------------


def test_short_inference_service_for_the_runtime():
    isvc = check(
        render_inference_service(
            name="ecg-classifier",
            model_uri="gs://bucket/models/ecg",
            namespace="ml",
            min_replicas=0,
            max_replicas=3,
            service_account="kfts-reader",
            deployment_mode="Standard",
        )
    )
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
    isvc = check(
        render_inference_service(
            name="detector",
            model_uri="s3://models/lstm",
            gpu=True,
            gpus=2,
            node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
            cpu="4",
            memory="16Gi",
            min_replicas=1,
            max_replicas=4,
        )
    )
    predictor = isvc.spec.predictor
    assert predictor.model.runtime == "kfts-cuda"
    assert predictor.model.resources.limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert predictor.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert [t.to_dict() for t in predictor.tolerations] == [
        {**t, "toleration_seconds": None, "value": None} for t in GPU_TOLERATIONS
    ]
    assert (predictor.min_replicas, predictor.max_replicas) == (1, 4)
    assert isvc.metadata.annotations is None  # the cluster's deployment mode


def test_named_runtime_and_knative_grpc():
    isvc = check(
        render_inference_service(
            name="m", model_uri="gs://b/m", runtime="kfts-team", deployment_mode="Knative", expose_grpc=True
        )
    )
    model = isvc.spec.predictor.model
    assert model.runtime == "kfts-team"
    assert [(p.name, p.container_port) for p in model.ports] == [("h2c", 8081)]  # Knative's name for gRPC
    assert isvc.metadata.annotations == {"serving.kserve.io/deploymentMode": "Knative"}
    plain = check(render_inference_service(name="m", model_uri="gs://b/m", deployment_mode="Serverless"))
    assert plain.spec.predictor.model.ports is None  # HTTP on KServe's default port


def test_custom_container_inference_service():
    isvc = check(
        render_inference_service(name="ecg", model_uri="gs://bucket/models/ecg", image="img:1-predictor", gpu=True)
    )
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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "Bad_Name"}, "DNS label"),
        ({"name": "m" * 46}, "45 characters"),
        ({"model_uri": ""}, "model-uri"),
        ({"min_replicas": 3, "max_replicas": 2}, "replicas"),
        ({"gpu": True, "gpus": 0}, "gpus"),
        ({"image": "img", "runtime": "kfts"}, "custom container"),
        ({"deployment_mode": "Fast"}, "one of Standard"),
        ({"deployment_mode": "Standard", "expose_grpc": True}, "for Knative"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        render_inference_service(**{"name": "m", "model_uri": "gs://b/m", **kwargs})


# -- KServe versions, canary, storage identity ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, version, written",
    [
        ("Standard", None, "Standard"),
        ("RawDeployment", None, "Standard"),
        ("Serverless", None, "Knative"),
        ("Standard", "0.15", "RawDeployment"),
        ("Knative", "v0.15.2", "Serverless"),
        ("Standard", "0.14.1", "RawDeployment"),
        ("RawDeployment", "v0.16.0", "Standard"),
        ("Serverless", "0.16.0-rc1", "Knative"),
        ("Knative", "0.20", "Knative"),
        ("Standard", "1.0", "Standard"),
    ],
)
def test_the_mode_is_written_by_the_name_the_clusters_kserve_knows(mode, version, written):
    """KServe v0.16.0 renamed the modes (kserve#4608: pkg/constants/constants.go has RawDeployment and
    Serverless up to v0.15.2, Standard and Knative with the old names deprecated from v0.16.0).
    v0.15.2's GetDeploymentMode (pkg/controller/v1beta1/inferenceservice/utils/utils.go) gives a name it does
    not know the cluster's default; v0.16.0 to v0.20.0 read the old names but their webhook
    (validateDeploymentMode) refuses any update of an InferenceService created with one (kserve#5885)."""
    isvc = check(render_inference_service(name="m", model_uri="gs://b/m", deployment_mode=mode, kserve_version=version))
    assert isvc.metadata.annotations["serving.kserve.io/deploymentMode"] == written


def test_canary_traffic_is_for_knative():
    isvc = check(
        render_inference_service(name="m", model_uri="gs://b/m", deployment_mode="Knative", canary_traffic_percent=10)
    )
    assert isvc.spec.predictor.canary_traffic_percent == 10
    for mode in ("Standard", None):
        with pytest.raises(InputError, match="--canary-traffic-percent needs --deployment-mode Knative"):
            render_inference_service(name="m", model_uri="gs://b/m", deployment_mode=mode, canary_traffic_percent=10)
    with pytest.raises(InputError, match="from 1 to 99"):
        render_inference_service(name="m", model_uri="gs://b/m", deployment_mode="Knative", canary_traffic_percent=100)


# KServe's annotations on the Secret that tell its storage initializer where the S3 API is
# (kserve v0.20.0 pkg/credentials/s3/s3_secret.go), and the keys it reads the credentials from (the
# s3AccessKeyIDName and s3SecretAccessKeyName of config/configmap/inferenceservice.yaml's credentials)
KSERVE_S3_ANNOTATIONS = {
    "serving.kserve.io/s3-endpoint",
    "serving.kserve.io/s3-usehttps",
    "serving.kserve.io/s3-region",
    "serving.kserve.io/s3-verifyssl",
}
KSERVE_S3_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_the_storage_initializer_gets_the_storage_secret_and_the_service_account():
    """KServe's credential builder (pkg/credentials/service_account_credentials.go,
    CreateSecretVolumeAndEnvFromServiceAccount) takes the Secret the InferenceService's
    serving.kserve.io/storageSecretName annotation names before the service account's secrets."""
    isvc = check(
        render_inference_service(
            name="m", model_uri="s3://b/m", storage_secret="kfts-storage", service_account="kfts-serving"
        )
    )
    assert isvc.metadata.annotations == {"serving.kserve.io/storageSecretName": "kfts-storage"}
    assert isvc.spec.predictor.service_account_name == "kfts-serving"


MINIO = "http://minio-service.kubeflow:9000"  # KFP's MinIO, as the pipelines' storage secret names it


def documented_objects() -> list[dict]:
    """The Secret and the ServiceAccount of deploy/SERVING.md."""
    text = (ROOT / "deploy" / "SERVING.md").read_text()
    block = text[text.index("```yaml\n# object-store identity") :]
    return list(yaml.safe_load_all(block[len("```yaml\n") : block.index("```\n", 8)]))


def documented_secret(namespace: str) -> dict:
    secret = documented_objects()[0]
    return {**secret, "metadata": {**secret["metadata"], "namespace": namespace}}


def test_the_documented_storage_secret_is_one_kserve_and_kfts_both_read():
    """deploy/SERVING.md's Secret: the keys kfts's pods read (kfts.kubeflow.kube.STORAGE_SECRET_KEYS) include the ones
    KServe reads, the endpoint annotations are KServe's, host:port with no scheme (releases before v0.17.0
    prefix one themselves: kserve#4797), and the ServiceAccount lists it."""
    secret, account = documented_objects()
    assert set(secret["stringData"]) == set(kube.STORAGE_SECRET_KEYS) and KSERVE_S3_KEYS <= set(secret["stringData"])
    annotations = secret["metadata"]["annotations"]
    assert set(annotations) <= KSERVE_S3_ANNOTATIONS and "serving.kserve.io/s3-endpoint" in annotations
    endpoint = secret["stringData"]["AWS_ENDPOINT_URL"]
    assert annotations["serving.kserve.io/s3-endpoint"] == endpoint.split("://", 1)[1]
    assert annotations["serving.kserve.io/s3-usehttps"] == ("1" if endpoint.startswith("https") else "0")
    assert endpoint == MINIO and {k: annotations[k] for k in s3_annotations(endpoint)} == s3_annotations(endpoint)
    assert account["kind"] == "ServiceAccount" and account["secrets"] == [{"name": secret["metadata"]["name"]}]
    sdk_object(secret, "V1Secret"), sdk_object(account, "V1ServiceAccount")  # fields Kubernetes knows


# -- the deploy step's rollout, against KServe's controller in the stand-in -------------------------------------------


def served(uri: str, **kwargs) -> dict:
    return render_inference_service(name="churn", model_uri=uri, namespace="team", **kwargs)


def rollout(cluster, manifest, lines, timeout_s=30) -> str:
    return apply_inference_service(manifest, api=cluster.api(), timeout_s=timeout_s, poll_s=0.01, log=lines.append)


def test_the_step_waits_for_kserve_to_roll_out_the_new_generation():
    """Ready of a generation KServe has not yet taken up is the previous model's: the step waits for
    observedGeneration to reach the replaced object's and, under Standard, for the new pods to take over."""
    lines = []
    with KubeStandIn(kserve=KServe("Standard")) as cluster:
        assert rollout(cluster, served("s3://b/model-1"), lines) == "http://churn.team.example"
        rollout(cluster, served("s3://b/model-2"), lines)
    assert [spec["predictor"]["model"]["storageUri"] for spec in cluster.kserve.reconciled] == [
        "s3://b/model-1",
        "s3://b/model-2",
    ]
    [replaced] = cluster.sent("PUT")
    assert replaced["spec"]["predictor"]["model"]["storageUri"] == "s3://b/model-2"
    second = lines[lines.index("replaced InferenceService team/churn") :]
    assert second[1:] == [
        "InferenceService team/churn: PredictorReady=True (NewReplicaSetAvailable), Ready=True "
        "(NewReplicaSetAvailable); generation 1 of 2 observed",  # the old model: not enough
        "InferenceService team/churn: PredictorReady=True (MinimumReplicasAvailable), Ready=True "
        "(MinimumReplicasAvailable); generation 2 of 2 observed",  # old pods serve while new ones start
        "InferenceService team/churn: PredictorReady=True (NewReplicaSetAvailable), Ready=True "
        "(NewReplicaSetAvailable); generation 2 of 2 observed",
        "ready at http://churn.team.example",
    ]


@pytest.mark.parametrize("mode, reason", [("Standard", "ProgressDeadlineExceeded"), ("Knative", "RevisionFailed")])
def test_a_broken_challenger_fails_the_step_and_the_champion_is_put_back(mode, reason):
    lines = []
    kserve = KServe(mode, broken=lambda spec: "broken" in spec["predictor"]["model"]["storageUri"])
    with KubeStandIn(kserve=kserve) as cluster:
        rollout(cluster, served("s3://b/champion", deployment_mode=mode), lines)
        with pytest.raises(kube.Failed) as failure:
            rollout(cluster, served("s3://b/broken", deployment_mode=mode), lines)
        final = kube.get(cluster.api(), kube.INFERENCE_SERVICE, "churn", "team")
    assert str(failure.value).startswith(f"InferenceService team/churn generation 2 failed: {reason}: ")
    assert str(failure.value).endswith(
        ". The previous spec of InferenceService team/churn is restored (generation "
        "3): the model it served is left serving, Ready again"
    )
    assert final["spec"]["predictor"]["model"]["storageUri"] == "s3://b/champion"
    assert [spec["predictor"]["model"]["storageUri"] for spec in kserve.reconciled] == [
        "s3://b/champion",
        "s3://b/broken",
        "s3://b/champion",
    ]
    assert [body["spec"]["predictor"]["model"]["storageUri"] for body in cluster.sent("PUT")] == [
        "s3://b/broken",
        "s3://b/champion",
    ]


def test_a_challenger_deleted_before_it_is_rolled_back_is_said_to_be_gone():
    """Someone deleted the failed InferenceService before the step put the previous spec back: the step says
    so, in place of a TypeError on the object it could not read."""
    kserve = KServe(broken=lambda spec: "broken" in spec["predictor"]["model"]["storageUri"])
    with KubeStandIn(kserve=kserve) as cluster:
        rollout(cluster, served("s3://b/champion"), [])
        champion = kube.get(cluster.api(), kube.INFERENCE_SERVICE, "churn", "team")
        # the step reads the champion it replaces; when it comes to restore it, the object is gone
        with mock.patch.object(kube, "get", side_effect=[champion, None]), pytest.raises(kube.Failed) as failure:
            rollout(cluster, served("s3://b/broken"), [])
    assert str(failure.value).endswith(
        ". InferenceService team/churn is gone (deleted since): its previous spec is not restored"
    )


def test_a_challenger_that_does_not_serve_in_time_is_rolled_back():
    lines = []
    kserve = KServe(broken=lambda spec: "slow" in spec["predictor"]["model"]["storageUri"], deadline=10**6)
    with KubeStandIn(kserve=kserve) as cluster:
        rollout(cluster, served("s3://b/champion"), lines)
        with pytest.raises(
            kube.Failed, match=r"was not Ready at generation 2 within 0 s .*restored .*serving, Ready again$"
        ):
            rollout(cluster, served("s3://b/slow"), lines, timeout_s=0.3)
    assert kserve.reconciled[-1]["predictor"]["model"]["storageUri"] == "s3://b/champion"


def test_a_first_model_that_fails_is_left_for_inspection():
    with (
        KubeStandIn(kserve=KServe(broken=lambda spec: True)) as cluster,
        pytest.raises(kube.Failed, match="no InferenceService team/churn before: the failed one is left"),
    ):
        rollout(cluster, served("s3://b/broken"), [])
    assert cluster.sent("PUT") == []


def test_a_canary_rolls_out_under_knative():
    lines = []
    with KubeStandIn(kserve=KServe("Knative")) as cluster:
        rollout(cluster, served("s3://b/champion", deployment_mode="Knative"), lines)
        rollout(cluster, served("s3://b/canary", deployment_mode="Knative", canary_traffic_percent=20), lines)
    [put] = cluster.sent("PUT")
    assert put["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert lines[-1] == "ready at http://churn.team.example"


def test_kserve_before_0_16_is_said_not_to_report_a_rawdeployments_rollout():
    lines = []
    with KubeStandIn(kserve=KServe("RawDeployment")) as cluster:
        rollout(cluster, served("s3://b/model", deployment_mode="Standard", kserve_version="0.15"), lines)
    assert any("KServe before 0.16 does not report a RawDeployment's rollout" in line for line in lines)


def test_the_deploy_step_fails_saying_the_previous_model_serves(tmp_path, monkeypatch, capsys):
    """The pipeline's deploy step (src/kfts/kubeflow/components/deploy.py) with its timeout parameter, a minio:// model
    URI (KFP's name for its MinIO) and the storage secret: a broken model fails the step with exit code 1 and
    the message that the previous one is back."""
    from kfp import dsl

    from kfts.kubeflow.components.deploy import deploy

    kserve = KServe(broken=lambda spec: "broken" in spec["predictor"]["containers"][0]["env"][0]["value"])
    with KubeStandIn(kserve=kserve, existing=[documented_secret("team")]) as cluster:
        cluster.kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        monkeypatch.setenv("AWS_ENDPOINT_URL", MINIO)  # the storage secret as env, as the pipelines give it
        monkeypatch.setattr(kube, "wait_for", lambda *a, **k: kube_wait_for(*a, **{**k, "poll_s": 0.01}))
        step = dict(name="churn", namespace="team", storage_secret="kfts-storage", timeout_minutes=1.0)
        url = deploy.python_func(model=dsl.Model(uri="minio://mlpipeline/v2/artifacts/run-1/model"), **step)
        with pytest.raises(SystemExit) as exit_code:
            deploy.python_func(model=dsl.Model(uri="minio://mlpipeline/v2/artifacts/broken/model"), **step)
        final = kube.get(cluster.api(), kube.INFERENCE_SERVICE, "churn", "team")
    assert url == "http://churn.team.example" and exit_code.value.code == 1
    assert final["spec"]["predictor"]["containers"][0]["env"] == [
        {"name": "STORAGE_URI", "value": "s3://mlpipeline/v2/artifacts/run-1/model"}
    ]
    assert final["metadata"]["annotations"] == {"serving.kserve.io/storageSecretName": "kfts-storage"}
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("error: InferenceService team/churn generation 2 failed: ProgressDeadlineExceeded")
    assert "restored (generation 3): the model it served is left serving, Ready again" in last


kube_wait_for = kube.wait_for


def test_a_storage_secret_is_checked_only_where_it_can_be():
    lines = []
    with KubeStandIn(forbidden=("secrets",)) as cluster:  # an account without `get secrets`: said, not fatal
        check_storage_secret(cluster.api(), "kfts-storage", "team", "s3://b/m", MINIO, log=lines.append)
    assert lines == ["Secret team/kfts-storage not checked: this pod may not read Secrets"]
    with KubeStandIn() as cluster, pytest.raises(InputError, match="there is no Secret team/kfts-storage"):
        check_storage_secret(cluster.api(), "kfts-storage", "team", "s3://b/m", MINIO)
    with KubeStandIn() as cluster:  # AWS itself, or a model that is not on S3: nothing to check
        check_storage_secret(cluster.api(), "kfts-storage", "team", "s3://b/m", "")
        check_storage_secret(cluster.api(), "kfts-storage", "team", "gs://b/m", MINIO)
    assert cluster.requests == []


@pytest.mark.parametrize(
    "annotations",
    [
        {},
        {"serving.kserve.io/s3-endpoint": "minio-service.kubeflow:9000"},
        {"serving.kserve.io/s3-endpoint": "s3.example:9000", "serving.kserve.io/s3-usehttps": "0"},
    ],
)
def test_a_storage_secret_that_does_not_tell_kserve_the_endpoint_is_refused(annotations, tmp_path, monkeypatch, capsys):
    """Without serving.kserve.io/s3-endpoint (and s3-usehttps 0 for HTTP: KServe's default is HTTPS) the
    storage initializer looks for the model on AWS (kserve pkg/credentials/s3/utils.go BuildS3EnvVars): the
    step says what to annotate, exit code 2, before creating anything."""
    from kfp import dsl

    from kfts.kubeflow.components.deploy import deploy

    secret = documented_secret("team")
    secret["metadata"]["annotations"] = annotations
    with KubeStandIn(kserve=KServe(), existing=[secret]) as cluster:
        cluster.kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        monkeypatch.setenv("AWS_ENDPOINT_URL", MINIO)
        with pytest.raises(SystemExit) as exit_code:
            deploy.python_func(
                model=dsl.Model(uri="minio://mlpipeline/model"),
                name="churn",
                namespace="team",
                storage_secret="kfts-storage",
            )
    assert exit_code.value.code == 2 and cluster.sent("POST") == []
    assert capsys.readouterr().err == (
        "error: Secret team/kfts-storage does not tell KServe's storage initializer the endpoint "
        f"{MINIO}, so it would look for s3://mlpipeline/model on AWS: kubectl annotate secret -n team "
        "kfts-storage --overwrite serving.kserve.io/s3-endpoint=minio-service.kubeflow:9000 "
        "serving.kserve.io/s3-usehttps=0\n"
    )


# -- the command line -----------------------------------------------------------------------------------------------


def test_cli_writes_the_inference_service(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTS_IMAGE", "registry.example/kfts:9")
    out = tmp_path / "isvc.yaml"
    assert (
        main(
            [
                "deploy",
                "render",
                "--model-uri",
                "pvc://models/it",
                "--name",
                "it",
                "--gpu",
                "--node-selector",
                "pool=gpu",
                "--toleration",
                "dedicated=ml:NoSchedule",
                "--max-replicas",
                "4",
                "--deployment-mode",
                "RawDeployment",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    isvc = check(yaml.safe_load(out.read_text()))
    assert isvc.spec.predictor.model.runtime == "kfts-cuda"
    assert isvc.spec.predictor.node_selector == {"pool": "gpu"}
    assert [(t.key, t.operator, t.value, t.effect) for t in isvc.spec.predictor.tolerations] == [
        ("dedicated", "Equal", "ml", "NoSchedule")
    ]
    assert isvc.spec.predictor.max_replicas == 4
    assert (
        main(
            ["deploy", "render", "--model-uri", "pvc://models/it", "--name", "it", "--container", "--output", str(out)]
        )
        == 0
    )
    assert (
        check(yaml.safe_load(out.read_text())).spec.predictor.containers[0].image == "registry.example/kfts:9-predictor"
    )


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model-uri", "gs://b/m", "--name", "it", "--toleration", "key:Sometimes"], "--toleration 'key:Sometimes'"),
        (["--name", "it"], "--model-uri is required"),
        (["--model-uri", "gs://b/m", "--name", "it", "--image", "img"], "--image goes with --container"),
        (["--kind", "ServingRuntime"], "--kind ServingRuntime needs --namespace"),
        (
            ["--kind", "ClusterServingRuntime", "--model-uri", "gs://b/m"],
            "--model-uri does not apply to --kind ClusterServingRuntime",
        ),
        (
            ["--kind", "ClusterServingRuntime", "--toleration", "a"],
            "--toleration does not apply to --kind ClusterServingRuntime",
        ),
        (["--kind", "ClusterServingRuntime", "--kserve-version", "0.15"], "--kserve-version does not apply"),
        (["--model-uri", "gs://b/m", "--name", "it", "--kserve-version", "latest"], "--kserve-version 'latest'"),
        (
            ["--model-uri", "gs://b/m", "--name", "it", "--canary-traffic-percent", "10"],
            "--canary-traffic-percent needs",
        ),
        (["--model-uri", "gs://b/m", "--name", "it", "--cpu", "-1"], "--cpu '-1' is not a Kubernetes quantity"),
        (["--model-uri", "gs://b/m", "--name", "it", "--memory", "2GB"], "--memory '2GB' is not a Kubernetes"),
        (["--kind", "ClusterServingRuntime", "--cpu", "0"], "--cpu '0' is not a Kubernetes quantity above 0"),
        (["--model-uri", "gs://b/m", "--name", "it", "--namespace", "Bad_NS"], "--namespace 'Bad_NS' is not"),
        (["--model-uri", "gs://b/m", "--name", "it", "--namespace", ""], "--namespace is empty ('')"),
        (["--model-uri", "gs://b/m", "--name", "it", "--container", "--image", ""], "--image is empty"),
        (["--model-uri", "gs://b/m", "--name", "it", "--cpu", ""], "--cpu is empty (''): give a value"),
        (["--model-uri", "gs://b/m", "--name", "it", "--node-selector", "a b=c"], "--node-selector 'a b=c': 'a b'"),
        (["--model-uri", "gs://b/m", "--name", "it", "--node-selector", "k=-x"], "--node-selector 'k=-x': '-x' is not"),
        (["--model-uri", "gs://b/m", "--name", "it", "--toleration", "Bad Key"], "--toleration 'Bad Key': 'Bad"),
        (["--model-uri", "gs://b/m", "--name", "it", "--toleration", "k=v v"], "--toleration 'k=v v': 'v v' is not"),
        (["--model-uri", "gs://b/m", "--name", "it", "--service-account", "SA"], "--service-account 'SA' is not"),
        (["--model-uri", "gs://b/m", "--name", "it", "--storage-secret", "s_3"], "--storage-secret 's_3' is not"),
        (["--model-uri", "gs://b/m", "--name", "it", "--runtime", "Kfts"], "--runtime 'Kfts' is not a Kubernetes"),
        (["--kind", "ServingRuntime", "--namespace", "ml-"], "--namespace 'ml-' is not a Kubernetes namespace"),
        (["--kind", "ClusterTrainingRuntime", "--name", "A_B"], "--name 'A_B' is not a Kubernetes object name"),
        (["--model-uri", "gs://b/m", "--name", "it", "--gpus", "2"], "--gpus goes with --gpu"),
        (["--kind", "ClusterServingRuntime", "--gpu", "--gpus", "2"], "--gpus goes with --gpu, for an Inference"),
        (["--model-uri", "s3://", "--name", "it"], "--model-uri 's3://' names no bucket: give s3://BUCKET/PATH"),
        (["--model-uri", "gs:///m", "--name", "it"], "--model-uri 'gs:///m' names no bucket"),
        (
            ["--kind", "TrainJob", "--name", "job", "--algorithm", "lstm-ad"]
            + ["--train", "s3:///t.csv", "--model-uri", "s3://b/m"],
            "--train 's3:///t.csv' names no bucket",
        ),
        (
            ["--kind", "TrainJob", "--name", "Bad_Job", "--algorithm", "lstm-ad"]
            + ["--train", "s3://b/t.csv", "--model-uri", "s3://b/m"],
            "--name 'Bad_Job' must be a DNS label",
        ),
        (
            ["--kind", "TrainJob", "--name", "job", "--algorithm", "lstm-ad", "--checkpoint-pvc", "Claim"]
            + ["--train", "s3://b/t.csv", "--model-uri", "s3://b/m"],
            "--checkpoint-pvc 'Claim' is not",
        ),
    ],
)
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
    assert {p.name for p in RENDERED} >= {
        "runtime-kfts.yaml",
        "runtime-kfts-cuda.yaml",
        "inferenceservice.yaml",
        "inferenceservice-gpu.yaml",
        "trainingruntime-kfts-torch.yaml",
        "trainingruntime-kfts-torch-cuda.yaml",
    }


@pytest.mark.parametrize("example", RENDERED, ids=[p.name for p in RENDERED])
def test_rendered_examples_are_what_their_command_writes(example, tmp_path, monkeypatch):
    monkeypatch.delenv("KFTS_IMAGE", raising=False)  # the default image names, as in the examples
    command = shlex.split(example.read_text().splitlines()[0][len("# ") :])
    out = tmp_path / "out.yaml"
    assert main([*command[1:], "--output", str(out)]) == 0
    assert yaml.safe_load(example.read_text()) == yaml.safe_load(out.read_text())
    check(yaml.safe_load(out.read_text()))


VERBS = {"GET": "get", "POST": "create", "PUT": "update"}


def test_the_pipeline_runner_role_allows_every_request_the_steps_make():
    """deploy/rbac-pipeline-runner.yaml against the requests the deploy step (a rollout, a failed one and its
    restore) and the TrainJob step (after a Failed attempt) send to the stand-in."""
    from kfts.kubeflow.trainjob import render_trainjob, run_trainjob

    role, binding = (
        sdk_object(m, k)
        for m, k in zip(
            yaml.safe_load_all((DEPLOY / "rbac-pipeline-runner.yaml").read_text()), ("V1Role", "V1RoleBinding")
        )
    )
    assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", role.metadata.name)
    assert binding.metadata.namespace == role.metadata.namespace
    trainjob = render_trainjob(
        name="t", algorithm="lstm-ad", train_uri="s3://b/t", model_uri="s3://b/m", namespace="team"
    )
    failed = {**trainjob, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    kserve = KServe(broken=lambda spec: "broken" in spec["predictor"]["model"]["storageUri"])
    with KubeStandIn(
        kserve=kserve,
        existing=[failed, documented_secret("team")],
        statuses={"t-2": [{"conditions": [{"type": "Complete", "status": "True"}]}]},
    ) as cluster:
        check_storage_secret(cluster.api(), "kfts-storage", "team", "s3://b/champion", MINIO)
        rollout(cluster, served("s3://b/champion"), [])
        with pytest.raises(kube.Failed):
            rollout(cluster, served("s3://b/broken"), [])
        run_trainjob(trainjob, api=cluster.api(), poll_s=0.01, log=lambda line: None)
    sent = {
        (match["group"] or "", match["plural"], VERBS[method])
        for method, match in ((method, PATH.match(path)) for method, path, _ in cluster.requests)
    }
    allowed = {
        (group, resource, verb)
        for rule in role.rules
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }
    assert sent == allowed  # every request allowed, and nothing allowed that is not asked for


def kfts_metric_names() -> set[str]:
    """The series names the predictor's metrics (kfts.serving.metrics) put on /metrics."""
    from prometheus_client.metrics import MetricWrapperBase

    from kfts.serving import metrics

    names = set()
    for family in (m.describe()[0] for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)):
        names |= {family.name} | (
            {family.name + s for s in ("_sum", "_count", "_bucket")} if family.type == "histogram" else set()
        )
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
