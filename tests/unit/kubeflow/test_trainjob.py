"""Training on Kubeflow Trainer: the TrainJob and the ClusterTrainingRuntime kfts renders (valid against the
CRDs in ../shared/schemas, and the node pod Trainer makes of them), and the step that creates the TrainJob and
waits for it, run against a local stand-in of the Kubernetes API (tests/kube_standin.py: this machine has no
cluster) with the official `kubernetes` client."""

from __future__ import annotations

import re

import pytest
import yaml

from kfts.core.errors import InputError
from kfts.kubeflow import kube
from kfts.kubeflow.trainjob import (
    WORK,
    render_training_runtime,
    render_trainjob,
    run_trainjob,
)

from helpers import crd_validator, run_cli
from kube_standin import KubeStandIn, trainer_pod

CRDS = {"TrainJob": "trainer-trainjob-crd.yaml", "ClusterTrainingRuntime": "trainer-clustertrainingruntime-crd.yaml"}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # the TrainJob CRD's CEL rule on metadata.name


def check(manifest: dict) -> dict:
    crd_validator(CRDS[manifest["kind"]], "v1alpha1").validate(manifest)
    assert DNS_1035.match(manifest["metadata"]["name"]) and len(manifest["metadata"]["name"]) <= 63
    return manifest


def job(**changes) -> dict:
    settings = {
        "name": "kfts-train",
        "algorithm": "inception-time",
        "train_uri": "s3://b/train.csv",
        "valid_uri": "s3://b/valid.csv",
        "model_uri": "s3://b/model",
        "hyperparameters": {"epochs": 5},
        "seed": 3,
        "nodes": 2,
        "procs_per_node": 4,
        "gpus_per_node": 4,
        "namespace": "team",
    }
    return check(render_trainjob(**{**settings, **changes}))


def test_a_gpu_trainjob_runs_torchrun_on_every_node_of_the_cuda_image():
    trainer = job()["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4
    assert trainer["image"].endswith("-cuda")
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    script = trainer["command"][2]
    assert "torchrun -m kfts train inception-time --train /tmp/kfts/train.csv" in script
    assert "--valid /tmp/kfts/valid.csv" in script and "--epochs 5" in script and "--device cuda" in script
    assert script.startswith("kfts copy s3://b/train.csv /tmp/kfts/train.csv && kfts copy s3://b/valid.csv")
    assert script.endswith("if [ -d /tmp/kfts/model ]; then kfts copy /tmp/kfts/model s3://b/model; fi")
    assert job()["spec"]["runtimeRef"] == {
        "name": "kfts-torch",
        "kind": "ClusterTrainingRuntime",
        "apiGroup": "trainer.kubeflow.org",
    }


def test_a_trainjob_can_continue_from_a_model():
    script = job(init_model_uri="s3://b/previous")["spec"]["trainer"]["command"][2]
    assert "kfts copy s3://b/previous /tmp/kfts/init-model" in script and "--init-model /tmp/kfts/init-model" in script


def test_a_cpu_trainjob_uses_the_cpu_image_and_no_gpu():
    trainer = job(gpus_per_node=0, procs_per_node=2, valid_uri="")["spec"]["trainer"]
    assert not trainer["image"].endswith("-cuda") and "nvidia.com/gpu" not in trainer["resourcesPerNode"]["limits"]
    assert "--device cpu" in trainer["command"][2] and "valid" not in trainer["command"][2]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"nodes": 0}, "nodes >= 1"),
        ({"procs_per_node": 2}, "one process per GPU"),
        ({"hyperparameters": {"epoch": 3}}, "unknown inception-time hyperparameter 'epoch'"),
        ({"model_uri": ""}, "--model-uri is empty"),
        ({"cpu": "two"}, "--cpu 'two' is not a Kubernetes quantity"),
        ({"memory": "8GB"}, "--memory '8GB' is not a Kubernetes quantity"),
    ],
)
def test_bad_settings_are_input_errors(changes, message):
    with pytest.raises(InputError, match=message):
        job(**changes)


def test_kfts_deploy_render_writes_the_trainjob():
    result = run_cli(
        "deploy",
        "render",
        "--kind",
        "TrainJob",
        "--name",
        "t",
        "--algorithm",
        "lstm-ad",
        "--train",
        "gs://b/t.csv",
        "--model-uri",
        "gs://b/m",
        "--nodes",
        "3",
        "--set",
        "epochs=7",
        check=True,
    )
    manifest = check(yaml.safe_load(result.stdout))
    assert manifest["spec"]["trainer"]["numNodes"] == 3 and "--epochs 7" in manifest["spec"]["trainer"]["command"][2]
    bad = run_cli(
        "deploy",
        "render",
        "--kind",
        "TrainJob",
        "--name",
        "t",
        "--algorithm",
        "lstm-ad",
        "--train",
        "gs://b/t.csv",
        "--model-uri",
        "gs://b/m",
        "--set",
        "epochs=many",
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1


# -- kfts's ClusterTrainingRuntime, and the node pods Trainer makes ---------------------------------------------


def test_the_kfts_training_runtime_runs_torchrun_pods_without_istio_with_shared_memory():
    runtime = check(render_training_runtime())
    assert runtime["metadata"]["name"] == "kfts-torch" and runtime["spec"]["mlPolicy"] == {"numNodes": 1, "torch": {}}
    [node_job] = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    # what Trainer's torch plugin looks for: the replicated job and container `node`, the trainer ancestor label
    assert node_job["name"] == "node"
    assert node_job["template"]["metadata"]["labels"] == {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    pod = node_job["template"]["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    [container] = pod["spec"]["containers"]
    assert container["name"] == "node" and not container["image"].endswith("-cuda")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}
    assert "emptyDir" in volumes[mounts["/tmp"]] and WORK.startswith("/tmp/")
    # one node down restarts them all (torchrun's static rendezvous), from their checkpoints
    assert node_job["template"]["spec"]["backoffLimit"] == 0
    assert runtime["spec"]["template"]["spec"]["failurePolicy"] == {"maxRestarts": 3}
    cuda = check(render_training_runtime(name="kfts-torch-cuda", gpu=True))
    assert cuda["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][
        0
    ]["image"].endswith("-cuda")


def test_the_node_pod_asks_per_process_and_carries_identity_and_checkpoints():
    """The pod Trainer makes of kfts's TrainJob on kfts's runtime (kube_standin.trainer_pod): resources are
    per process times processes per node, the object-store secret arrives as env (a TrainJob has no envFrom),
    the service account and the checkpoint claim through runtimePatches."""
    trainjob = job(
        cpu="3",
        memory="12Gi",
        storage_secret="kfts-s3",
        service_account="kfts-runner",
        checkpoint_pvc="kfts-checkpoints",
    )
    assert trainjob["spec"]["trainer"]["resourcesPerNode"] == {
        "requests": {"cpu": "12", "memory": "48Gi", "nvidia.com/gpu": "4"},
        "limits": {"cpu": "12", "memory": "48Gi", "nvidia.com/gpu": "4"},
    }
    pod = trainer_pod(trainjob, render_training_runtime(gpu=True))
    [node] = pod["containers"]
    assert node["resources"] == trainjob["spec"]["trainer"]["resourcesPerNode"]
    assert pod["serviceAccountName"] == "kfts-runner"
    env = {e["name"]: e for e in node["env"]}
    assert {name: env[name]["valueFrom"]["secretKeyRef"] for name in kube.STORAGE_SECRET_KEYS} == {
        "AWS_ACCESS_KEY_ID": {"name": "kfts-s3", "key": "AWS_ACCESS_KEY_ID"},
        "AWS_SECRET_ACCESS_KEY": {"name": "kfts-s3", "key": "AWS_SECRET_ACCESS_KEY"},
        "AWS_ENDPOINT_URL": {"name": "kfts-s3", "key": "AWS_ENDPOINT_URL", "optional": True},
        "AWS_REGION": {"name": "kfts-s3", "key": "AWS_REGION", "optional": True},
    }
    assert env["PET_NPROC_PER_NODE"]["value"] == "4" and env["PET_NNODES"]["value"] == "2"
    claim = {v["name"]: v for v in pod["volumes"]}["kfts-checkpoints"]["persistentVolumeClaim"]
    assert claim == {"claimName": "kfts-checkpoints"}
    assert {"name": "kfts-checkpoints", "mountPath": "/kfts-checkpoints"} in node["volumeMounts"]
    assert "--checkpoint-dir /kfts-checkpoints/kfts-train " in node["command"][2]
    # the runtime's own mounts stay
    assert {m["mountPath"] for m in node["volumeMounts"]} >= {"/tmp", "/dev/shm"}


@pytest.mark.parametrize(
    "cpu, memory, procs, expected",
    [("500m", "1.5Gi", 3, ("1500m", "4.5Gi")), ("2", "8Gi", 1, ("2", "8Gi")), ("0.5", "512Mi", 4, ("2", "2048Mi"))],
)
def test_resources_per_node_are_per_process_times_processes(cpu, memory, procs, expected):
    trainer = job(cpu=cpu, memory=memory, gpus_per_node=0, procs_per_node=procs)["spec"]["trainer"]
    assert (trainer["resourcesPerNode"]["limits"]["cpu"], trainer["resourcesPerNode"]["limits"]["memory"]) == expected


def test_kfts_deploy_render_writes_the_training_runtime():
    result = run_cli("deploy", "render", "--kind", "ClusterTrainingRuntime", "--gpu", check=True)
    runtime = check(yaml.safe_load(result.stdout))
    assert runtime == render_training_runtime(gpu=True)
    bad = run_cli("deploy", "render", "--kind", "ClusterTrainingRuntime", "--model-uri", "s3://b/m")
    assert bad.returncode == 2 and bad.stderr == "error: --model-uri does not apply to --kind ClusterTrainingRuntime\n"


CREATED = {"conditions": [{"type": "Created", "status": "True", "reason": "JobSetCreated"}]}
COMPLETE = {"conditions": [{"type": "Complete", "status": "True", "reason": "JobSetCompleted"}]}
FAILED = {
    "conditions": [{"type": "Failed", "status": "True", "reason": "TrainingFailed", "message": "rank 3 exited 1"}]
}


def test_the_step_creates_the_trainjob_and_waits_until_it_is_complete():
    lines = []
    with KubeStandIn(statuses=[{}, CREATED, CREATED, COMPLETE]) as cluster:
        trainjob = run_trainjob(job(), api=cluster.api(), poll_s=0.01, log=lines.append)
    assert trainjob["status"] == COMPLETE and trainjob["metadata"]["name"] == "kfts-train"
    [created] = cluster.sent("POST")
    assert created["kind"] == "TrainJob" and created["spec"]["trainer"]["numNodes"] == 2
    assert lines[0] == "created TrainJob team/kfts-train"
    assert lines[1:] == [
        "TrainJob team/kfts-train: no conditions yet",
        "TrainJob team/kfts-train: Created=True (JobSetCreated)",
        "TrainJob team/kfts-train: Complete=True (JobSetCompleted)",
    ]  # changes only


def test_a_failed_trainjob_fails_the_step_with_its_reason():
    with KubeStandIn(statuses=[CREATED, FAILED]) as cluster, pytest.raises(kube.Failed) as failure:
        run_trainjob(job(), api=cluster.api(), poll_s=0.01, log=lambda line: None)
    assert str(failure.value) == "TrainJob team/kfts-train failed: TrainingFailed: rank 3 exited 1"


def test_a_retried_step_follows_the_trainjob_its_first_attempt_created():
    manifest = job()
    with KubeStandIn(statuses=[COMPLETE], existing=[manifest]) as cluster:
        run_trainjob(manifest, api=cluster.api(), poll_s=0.01, log=lambda line: None)
    assert cluster.sent("POST") == [] and cluster.sent("PUT") == []


def test_a_retried_step_after_a_failed_trainjob_starts_a_fresh_one_on_the_same_checkpoints():
    """KFP retries the step's pod; the retry finds the TrainJobs earlier attempts created by name: after a
    Failed one it creates the next (kfts-train-2, then -3), with the same spec, so that training resumes from
    the same checkpoint folder, rather than following the Failed one to the same failure."""
    manifest = job(checkpoint_pvc="kfts-checkpoints")
    lines = []
    earlier = [
        {**manifest, "status": FAILED},
        {**manifest, "metadata": {**manifest["metadata"], "name": "kfts-train-2"}, "status": FAILED},
    ]
    with KubeStandIn(statuses={"kfts-train-3": [CREATED, COMPLETE]}, existing=earlier) as cluster:
        trainjob = run_trainjob(manifest, api=cluster.api(), poll_s=0.01, log=lines.append)
    [created] = cluster.sent("POST")
    assert created["metadata"]["name"] == trainjob["metadata"]["name"] == "kfts-train-3"
    assert created["spec"] == manifest["spec"]
    assert "--checkpoint-dir /kfts-checkpoints/kfts-train " in created["spec"]["trainer"]["command"][2]
    assert lines[:3] == [
        "TrainJob team/kfts-train failed (TrainingFailed): starting a fresh one",
        "TrainJob team/kfts-train-2 failed (TrainingFailed): starting a fresh one",
        "created TrainJob team/kfts-train-3",
    ]


def test_a_trainjob_that_does_not_finish_in_time_fails_the_step():
    with KubeStandIn(statuses=[CREATED]) as cluster, pytest.raises(kube.Failed, match="not Complete within 0 s"):
        run_trainjob(job(), api=cluster.api(), timeout_s=0, poll_s=0.01, log=lambda line: None)


def test_the_step_hands_the_trainjob_kfps_artifact_uris_as_they_are(tmp_path, monkeypatch):
    """KFP 2.17 names the artifacts in its own store minio://BUCKET/... (the launcher sends them to the store's
    endpoint, seaweedfs.kubeflow:9000 when none is configured); kfts copy in the TrainJob's pods reads minio:// the
    same way (kfts.core.storage.s3_options, tested in tests/integration/core/test_storage.py). As s3:// they
    would go to AWS wherever the storage Secret names no endpoint."""
    from kfp import dsl

    from kfts.core import storage
    from kfts.kubeflow.components.train_on_trainjob import train_on_trainjob

    copied = []
    monkeypatch.setattr(storage, "copy", lambda source, target: copied.append(source))
    monkeypatch.setattr("kfts.core.artifact.read_manifest", lambda path: {"metrics": {}, "hyperparameters": {}})
    root = "minio://mlpipeline/v2/artifacts/p/run-7"
    with KubeStandIn(statuses=[COMPLETE]) as cluster:
        cluster.kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        train_on_trainjob.python_func(
            algorithm="inception-time",
            train_data=dsl.Dataset(uri=f"{root}/validate/train"),
            valid_data=dsl.Dataset(uri=f"{root}/validate/none", metadata={"present": False}),
            init_model=dsl.Model(uri=f"{root}/fetch/model"),
            hyperparameters={},
            seed=1,
            run_id="run-7",
            model=dsl.Model(uri=f"{root}/train/model"),
            metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        )
    [created] = cluster.sent("POST")
    script = created["spec"]["trainer"]["command"][2]
    assert f"kfts copy {root}/validate/train " in script and f"kfts copy {root}/fetch/model " in script
    assert f"kfts copy {WORK}/model {root}/train/model-trainjob" in script
    assert copied == [f"{root}/train/model-trainjob"]
