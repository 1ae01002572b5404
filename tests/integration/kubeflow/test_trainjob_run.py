"""The train-on-TrainJob step end to end: it creates the TrainJob in a local stand-in of the Kubernetes API
(tests/kube_standin.py: this machine has no cluster), the stand-in runs its torchrun on this machine, and the
step hands on the model (the manifests and the step's logic alone: tests/unit/kubeflow/test_trainjob.py)."""

from __future__ import annotations

import re
import shutil

from kfts.kubeflow import kube
from kfts.kubeflow.trainjob import (
    WORK,
)

from kube_standin import KubeStandIn

CRDS = {"TrainJob": "trainer-trainjob-crd.yaml", "ClusterTrainingRuntime": "trainer-clustertrainingruntime-crd.yaml"}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # the TrainJob CRD's CEL rule on metadata.name


def test_the_train_on_trainjob_step_trains_on_two_processes_and_hands_on_the_model(tmp_path, monkeypatch):
    """The step as a pipeline runs it: its TrainJob's own command (fetch, torchrun with 2 processes, put the
    model back) run by the stand-in's one-node Trainer, then the model copied into the step's output."""
    from kfp import dsl

    from kfts.cli.sample_data import classification, write_csv
    from kfts.kubeflow.components.train_on_trainjob import train_on_trainjob

    labels, values = classification(n_per_class=10, length=24)
    write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    model, metrics = dsl.Model(uri=str(tmp_path / "out" / "model")), dsl.Metrics(uri=str(tmp_path / "metrics"))
    no_valid = dsl.Dataset(uri=str(tmp_path / "none"), metadata={"present": False})
    with KubeStandIn(run_trainjobs=True) as cluster:
        cluster.kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        monkeypatch.setattr(kube, "wait_for", _fast(kube.wait_for))
        train_on_trainjob.python_func(
            algorithm="inception-time",
            train_data=dsl.Dataset(uri=str(tmp_path / "train.csv")),
            valid_data=no_valid,
            init_model=dsl.Model(uri=str(tmp_path / "none"), metadata={"present": False}),
            hyperparameters={"filters": 4, "depth": 2, "models": 2, "epochs": 2},
            seed=1,
            run_id="run-1",
            model=model,
            metrics=metrics,
            nodes=1,
            procs_per_node=2,
        )
    shutil.rmtree(WORK, ignore_errors=True)  # what the TrainJob's container left in its /tmp, here this machine's
    log = cluster.logs["kfts-run-1"]
    assert "distributed: 2 processes" in log, log
    from kfts.jobs.load import load_model

    trained = load_model(model.path, device="cpu")
    assert trained.params.models == 2 and list(trained.classes) == ["a", "b", "c"]
    assert set(metrics.metadata) == {"train_loss", "train_accuracy"}
    assert model.metadata["trainjob"] == "kfts-run-1"


def _fast(wait_for):
    def fast(*args, **kwargs):
        return wait_for(*args, **{**kwargs, "poll_s": 0.2})

    return fast
