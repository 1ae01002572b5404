"""Training on Kubeflow Trainer: the TrainJob kfts renders (valid against the TrainJob CRD in ../shared/schemas),
and the step that creates it and waits for it, run against a local stand-in of the Kubernetes API
(tests/kube_standin.py: this machine has no cluster) with the official `kubernetes` client. The same for
the deploy step's InferenceService."""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import crd_validator, run_cli
from kube_standin import KubeStandIn

from kfts import kube
from kfts.deploy import apply_inference_service, render_inference_service
from kfts.errors import InputError
from kfts.trainjob import WORK, render_trainjob, run_trainjob


def check(manifest: dict) -> dict:
    crd_validator("trainer-trainjob-crd.yaml", "v1alpha1").validate(manifest)
    return manifest


def job(**changes) -> dict:
    settings = {"name": "kfts-train", "algorithm": "inception-time", "train_uri": "s3://b/train.csv",
                "valid_uri": "s3://b/valid.csv", "model_uri": "s3://b/model", "hyperparameters": {"epochs": 5},
                "seed": 3, "nodes": 2, "procs_per_node": 4, "gpus_per_node": 4, "namespace": "team"}
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
    assert job()["spec"]["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime",
                                           "apiGroup": "trainer.kubeflow.org"}


def test_a_trainjob_can_continue_from_a_model():
    script = job(init_model_uri="s3://b/previous")["spec"]["trainer"]["command"][2]
    assert "kfts copy s3://b/previous /tmp/kfts/init-model" in script and "--init-model /tmp/kfts/init-model" in script


def test_a_cpu_trainjob_uses_the_cpu_image_and_no_gpu():
    trainer = job(gpus_per_node=0, procs_per_node=2, valid_uri="")["spec"]["trainer"]
    assert not trainer["image"].endswith("-cuda") and "nvidia.com/gpu" not in trainer["resourcesPerNode"]["limits"]
    assert "--device cpu" in trainer["command"][2] and "valid" not in trainer["command"][2]


@pytest.mark.parametrize("changes, message", [
    ({"nodes": 0}, "nodes >= 1"), ({"procs_per_node": 2}, "one process per GPU"),
    ({"hyperparameters": {"epoch": 3}}, "unknown inception-time hyperparameter 'epoch'"),
    ({"model_uri": ""}, "--model-uri is empty")])
def test_bad_settings_are_input_errors(changes, message):
    with pytest.raises(InputError, match=message):
        job(**changes)


def test_kfts_deploy_render_writes_the_trainjob():
    result = run_cli("deploy", "render", "--kind", "TrainJob", "--name", "t", "--algorithm", "lstm-ad", "--train",
                     "gs://b/t.csv", "--model-uri", "gs://b/m", "--nodes", "3", "--set", "epochs=7", check=True)
    manifest = check(yaml.safe_load(result.stdout))
    assert manifest["spec"]["trainer"]["numNodes"] == 3 and "--epochs 7" in manifest["spec"]["trainer"]["command"][2]
    bad = run_cli("deploy", "render", "--kind", "TrainJob", "--name", "t", "--algorithm", "lstm-ad", "--train",
                  "gs://b/t.csv", "--model-uri", "gs://b/m", "--set", "epochs=many")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1


CREATED = {"conditions": [{"type": "Created", "status": "True", "reason": "JobSetCreated"}]}
COMPLETE = {"conditions": [{"type": "Complete", "status": "True", "reason": "JobSetCompleted"}]}
FAILED = {"conditions": [{"type": "Failed", "status": "True", "reason": "TrainingFailed",
                          "message": "rank 3 exited 1"}]}


def test_the_step_creates_the_trainjob_and_waits_until_it_is_complete():
    lines = []
    with KubeStandIn(statuses=[{}, CREATED, CREATED, COMPLETE]) as cluster:
        status = run_trainjob(job(), api=cluster.api(), poll_s=0.01, log=lines.append)
    assert status == COMPLETE
    [created] = cluster.sent("POST")
    assert created["kind"] == "TrainJob" and created["spec"]["trainer"]["numNodes"] == 2
    assert lines[0] == "created TrainJob team/kfts-train"
    assert lines[1:] == ["TrainJob team/kfts-train: no conditions yet",
                         "TrainJob team/kfts-train: Created=True (JobSetCreated)",
                         "TrainJob team/kfts-train: Complete=True (JobSetCompleted)"]  # changes only


def test_a_failed_trainjob_fails_the_step_with_its_reason():
    with KubeStandIn(statuses=[CREATED, FAILED]) as cluster, pytest.raises(kube.Failed) as failure:
        run_trainjob(job(), api=cluster.api(), poll_s=0.01, log=lambda line: None)
    assert str(failure.value) == "TrainJob team/kfts-train failed: TrainingFailed: rank 3 exited 1"


def test_a_retried_step_follows_the_trainjob_its_first_attempt_created():
    manifest = job()
    with KubeStandIn(statuses=[COMPLETE], existing=[manifest]) as cluster:
        run_trainjob(manifest, api=cluster.api(), poll_s=0.01, log=lambda line: None)
    assert cluster.sent("POST") == [] and cluster.sent("PUT") == []


def test_a_trainjob_that_does_not_finish_in_time_fails_the_step():
    with KubeStandIn(statuses=[CREATED]) as cluster, pytest.raises(kube.Failed, match="not Complete within 0 s"):
        run_trainjob(job(), api=cluster.api(), timeout_s=0, poll_s=0.01, log=lambda line: None)


def test_the_deploy_step_creates_then_replaces_the_inference_service_and_waits_for_ready():
    manifest = render_inference_service(name="churn", model_uri="s3://b/model", namespace="team")
    ready = {"url": "http://churn.team.example", "conditions": [{"type": "Ready", "status": "True"}]}
    lines = []
    with KubeStandIn(statuses=[ready]) as cluster:
        assert apply_inference_service(manifest, api=cluster.api(), poll_s=0.01, log=lines.append) == ready["url"]
        apply_inference_service(manifest, api=cluster.api(), poll_s=0.01, log=lines.append)
    assert lines[0] == "created InferenceService team/churn" and "replaced InferenceService team/churn" in lines
    [replaced] = cluster.sent("PUT")
    assert replaced["metadata"]["resourceVersion"] == "1"  # the one the stand-in gave the first object


@pytest.mark.integration
def test_the_train_on_trainjob_step_trains_on_two_processes_and_hands_on_the_model(tmp_path, monkeypatch):
    """The step as a pipeline runs it: its TrainJob's own command (fetch, torchrun with 2 processes, put the
    model back) run by the stand-in's one-node Trainer, then the model copied into the step's output."""
    from kfp import dsl

    from kfts.components.train_on_trainjob import train_on_trainjob
    from kfts.sample_data import classification, write_csv
    labels, values = classification(n_per_class=10, length=24)
    write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    model, metrics = dsl.Model(uri=str(tmp_path / "out" / "model")), dsl.Metrics(uri=str(tmp_path / "metrics"))
    no_valid = dsl.Dataset(uri=str(tmp_path / "none"), metadata={"present": False})
    with KubeStandIn(run_trainjobs=True) as cluster:
        cluster.kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        monkeypatch.setattr(kube, "wait_for", _fast(kube.wait_for))
        train_on_trainjob.python_func(
            algorithm="inception-time", train_data=dsl.Dataset(uri=str(tmp_path / "train.csv")),
            valid_data=no_valid, init_model=dsl.Model(uri=str(tmp_path / "none"), metadata={"present": False}),
            hyperparameters={"filters": 4, "depth": 2, "models": 2, "epochs": 2}, seed=1,
            run_id="run-1", model=model, metrics=metrics, nodes=1, procs_per_node=2)
    shutil.rmtree(WORK, ignore_errors=True)  # what the TrainJob's container left in its /tmp, here this machine's
    log = cluster.logs["kfts-run-1"]
    assert "distributed: 2 processes" in log, log
    from kfts.algorithms import load_model
    trained = load_model(model.path, device="cpu")
    assert trained.params.models == 2 and list(trained.classes) == ["a", "b", "c"]
    assert set(metrics.metadata) == {"train_loss", "train_accuracy"}
    assert model.metadata["trainjob"] == "kfts-run-1"


def _fast(wait_for):
    def fast(*args, **kwargs):
        return wait_for(*args, **{**kwargs, "poll_s": 0.2})
    return fast
