"""Every pod spec kfts renders passes Pod Security "restricted" (tests/pod_security.py) and kfts's hardening
(read-only root filesystem, requests and limits): the InferenceService in both forms and the pods KServe makes
of them with the kfts runtimes, the ServingRuntimes, the ClusterTrainingRuntime and the node pod Trainer makes
of a TrainJob on it, and the example manifests in deploy/."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from kfts.kubeflow import podsecurity
from kfts.kubeflow.deploy import render_inference_service, render_serving_runtime
from kfts.kubeflow.trainjob import render_training_runtime, render_trainjob

from helpers import ROOT
from kube_standin import kserve_pod, trainer_pod
from pod_security import hardening_violations, pod_specs, restricted_violations

MODES = [None, "Standard", "Knative"]


def rendered() -> dict[str, dict]:
    """name -> a pod spec kfts renders, or one that KServe or Trainer make of what kfts renders."""
    pods = {}
    for mode in MODES:
        for gpu in (False, True):
            runtime = render_serving_runtime(image="img", gpu=gpu, deployment_mode=mode)
            short = render_inference_service(
                name="m", model_uri="s3://b/m", gpu=gpu, deployment_mode=mode, runtime=runtime["metadata"]["name"]
            )
            custom = render_inference_service(
                name="m", model_uri="s3://b/m", image="img", gpu=gpu, deployment_mode=mode
            )
            pods[f"ClusterServingRuntime {mode} gpu={gpu}"] = runtime["spec"]
            pods[f"InferenceService {mode} gpu={gpu}, as KServe runs it"] = kserve_pod(short, runtime)
            pods[f"InferenceService {mode} gpu={gpu}, custom container"] = custom["spec"]["predictor"]
    pods["ServingRuntime"] = render_serving_runtime(image="img", namespace="ml")["spec"]
    for gpus in (0, 2):
        runtime = render_training_runtime(gpu=gpus > 0)
        [(_, node)] = pod_specs(runtime)
        pods[f"ClusterTrainingRuntime gpu={gpus > 0}"] = node
        trainjob = render_trainjob(
            name="t",
            algorithm="lstm-ad",
            train_uri="s3://b/t.csv",
            model_uri="s3://b/m",
            nodes=2,
            procs_per_node=max(gpus, 1),
            gpus_per_node=gpus,
            storage_secret="s",
            service_account="a",
            checkpoint_pvc="c",
        )
        pods[f"TrainJob gpus={gpus}, as Trainer runs it"] = trainer_pod(trainjob, runtime)
    return pods


PODS = rendered()


@pytest.mark.parametrize("name", PODS)
def test_every_rendered_pod_is_restricted_and_hardened(name):
    assert restricted_violations(PODS[name]) == []
    assert hardening_violations(PODS[name]) == []


EXAMPLES = sorted((ROOT / "deploy").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_example_manifests_are_restricted(example):
    for manifest in yaml.safe_load_all(example.read_text()):
        for path, pod in pod_specs(manifest):
            assert restricted_violations(pod) == [], f"{example.name} {path}"


def test_the_writable_places_are_emptydirs_on_a_read_only_root():
    """/tmp is where the images put what must be written (HOME caches through MPLCONFIGDIR and
    XDG_CACHE_HOME, kfts's TrainJob work folder): every container has it as an emptyDir."""
    dockerfile = (ROOT / "images" / "Dockerfile").read_text()
    assert "MPLCONFIGDIR=/tmp/" in dockerfile and "XDG_CACHE_HOME=/tmp/" in dockerfile
    for name, pod in PODS.items():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], name


def test_the_user_is_the_images_own():
    """runAsUser is the user the images run as (images/Dockerfile creates it; the predictor image keeps it)."""
    dockerfile = (ROOT / "images" / "Dockerfile").read_text()
    uid = int(re.search(r"useradd --uid (\d+)", dockerfile)[1])
    assert uid == podsecurity.USER != 0
    for file in ("Dockerfile", "predictor.Dockerfile"):
        users = re.findall(r"^USER (\S+)", (ROOT / "images" / file).read_text(), re.M)
        assert users and users[-1] == f"{uid}:{uid}", file


def sc(pod: dict) -> dict:
    return pod["containers"][0]["securityContext"]


BAD = [  # (a way to spoil a rendered pod, the violation it is reported for)
    (lambda p: p.update(hostNetwork=True), "hostNetwork: true"),
    (lambda p: p.update(hostPID=True), "hostPID: true"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "volume h: type hostPath"),
    (lambda p: p["securityContext"].update(runAsUser=0), "pod: runAsUser 0"),
    (lambda p: p["securityContext"].update(seccompProfile={"type": "Unconfined"}), "pod: seccompProfile Unconfined"),
    (lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "sysctl kernel.msgmax"),
    (lambda p: sc(p).update(privileged=True), "containers[kserve-container]: privileged"),
    (lambda p: sc(p).pop("allowPrivilegeEscalation"), "containers[kserve-container]: allowPrivilegeEscalation is"),
    (lambda p: sc(p).update(capabilities={"drop": ["NET_RAW"]}), "containers[kserve-container]: capabilities do not"),
    (lambda p: sc(p)["capabilities"].update(add=["SYS_ADMIN"]), "containers[kserve-container]: adds capabilities"),
    (lambda p: sc(p).update(runAsNonRoot=False), "containers[kserve-container]: runAsNonRoot false"),
    (lambda p: sc(p).update(procMount="Unmasked"), "containers[kserve-container]: procMount Unmasked"),
    (lambda p: sc(p).update(seLinuxOptions={"type": "spc_t"}), "containers[kserve-container]: seLinuxOptions"),
    (lambda p: sc(p).update(windowsOptions={"hostProcess": True}), "containers[kserve-container]: windowsOptions"),
    (lambda p: p["containers"][0]["ports"][0].update(hostPort=80), "containers[kserve-container]: hostPort 80"),
    (
        lambda p: p.update(initContainers=[{"name": "i", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]),
        "initContainers[i]: allowPrivilegeEscalation is not false",
    ),
    (
        lambda p: [p["securityContext"].pop("runAsNonRoot"), sc(p).pop("runAsNonRoot")],
        "runAsNonRoot is not true for the pod nor for every container",
    ),
    (
        lambda p: [p["securityContext"].pop("seccompProfile"), sc(p).pop("seccompProfile")],
        "containers[kserve-container]: no seccompProfile",
    ),
]


@pytest.mark.parametrize("spoil, violation", BAD, ids=[v for _, v in BAD])
def test_the_checker_finds_each_kind_of_violation(spoil, violation):
    """Each rule has teeth: a rendered pod, spoilt in one way, is reported for that, and only for that."""
    pod = copy.deepcopy(PODS["InferenceService Standard gpu=False, custom container"])
    spoil(pod)
    [found] = restricted_violations(pod)
    assert found.startswith(violation)


def test_hardening_is_checked_too():
    pod = PODS["ServingRuntime"]
    container = {
        **pod["containers"][0],
        "resources": {"requests": {"cpu": "1"}},
        "securityContext": {**pod["containers"][0]["securityContext"], "readOnlyRootFilesystem": False},
    }
    assert hardening_violations({**pod, "containers": [container]}) == [
        "containers[kserve-container]: readOnlyRootFilesystem is not true",
        "containers[kserve-container]: no requests memory",
        "containers[kserve-container]: no limits cpu",
        "containers[kserve-container]: no limits memory",
    ]
