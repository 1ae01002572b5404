"""Training on Kubeflow Trainer: a TrainJob (trainer.kubeflow.org/v1alpha1) on a ClusterTrainingRuntime such
as `torch-distributed`, which starts the trainer's command on every node with torchrun's settings in PET_*
variables. `kfts deploy render trainjob` writes one; the pipelines' TrainJob train step creates one and
waits for it (run_trainjob).

Each node fetches the data (`kfts copy`), runs `torchrun -m kfts train ...` (kfts.distributed shares the work
out) and the node that holds global rank 0, the one with the model, copies it to `model_uri`.
"""

from __future__ import annotations

import shlex
from dataclasses import fields

from kfts.errors import InputError

WORK = "/tmp/kfts"  # inside the trainer's container; the images' /tmp is writable with a read-only root


def render_trainjob(*, name: str, algorithm: str, train_uri: str, model_uri: str, valid_uri: str = "",
                    init_model_uri: str = "", hyperparameters: dict | None = None, seed: int = 0, nodes: int = 1, procs_per_node: int = 1,
                    gpus_per_node: int = 0, image: str | None = None, runtime: str = "torch-distributed",
                    namespace: str | None = None, cpu: str = "2", memory: str = "8Gi",
                    env: dict[str, str] | None = None) -> dict:
    """A TrainJob as a dict. `model_uri` is where the artifact goes; the data and the model are URIs every
    node can read and write (object store, or a path on a volume the runtime mounts); `init_model_uri` is a
    model to continue training from. `env` is set in the
    trainer container (e.g. an object store's endpoint); credentials belong in the runtime's pod template."""
    from kfts.algorithms import spec
    from kfts.images import component_image
    if nodes < 1 or procs_per_node < 1 or gpus_per_node < 0:
        raise InputError(f"a TrainJob needs nodes >= 1 ({nodes}), processes per node >= 1 ({procs_per_node}) "
                         f"and GPUs per node >= 0 ({gpus_per_node})")
    if gpus_per_node and procs_per_node != gpus_per_node:
        raise InputError(f"with GPUs, one process per GPU: --procs-per-node {procs_per_node} should be "
                         f"--gpus-per-node {gpus_per_node}")
    known = {f.name for f in fields(spec(algorithm).Params)}
    unknown = sorted(set(hyperparameters or {}) - known)
    if unknown:
        raise InputError(f"unknown {algorithm} hyperparameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for what, uri in (("--train", train_uri), ("--model-uri", model_uri)):
        if not uri:
            raise InputError(f"{what} is empty: give a URI every training node reaches")

    flags = [f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in (hyperparameters or {}).items()]
    fetch = [f"kfts copy {shlex.quote(train_uri)} {WORK}/train.csv"]
    train = (f"torchrun -m kfts train {algorithm} --train {WORK}/train.csv --model-dir {WORK}/model "
             f"--seed {int(seed)} --device {'cuda' if gpus_per_node else 'cpu'}")
    if valid_uri:
        fetch.append(f"kfts copy {shlex.quote(valid_uri)} {WORK}/valid.csv")
        train += f" --valid {WORK}/valid.csv"
    if init_model_uri:
        fetch.append(f"kfts copy {shlex.quote(init_model_uri)} {WORK}/init-model")
        train += f" --init-model {WORK}/init-model"
    script = " && ".join([*fetch, " ".join([train, *flags]),
                          # only the node of global rank 0 has the model
                          f"if [ -d {WORK}/model ]; then kfts copy {WORK}/model {shlex.quote(model_uri)}; fi"])
    resources = {"cpu": cpu, "memory": memory}
    if gpus_per_node:
        resources["nvidia.com/gpu"] = str(gpus_per_node)
    trainer = {"image": image or component_image(gpu=gpus_per_node > 0), "command": ["sh", "-c", script],
               "numNodes": nodes, "numProcPerNode": procs_per_node,
               "resourcesPerNode": {"requests": dict(resources), "limits": dict(resources)}}
    if env:
        trainer["env"] = [{"name": k, "value": str(v)} for k, v in env.items()]
    metadata = {"name": name, "labels": {"app.kubernetes.io/name": "kfts", "app.kubernetes.io/component": "train",
                                         "kfts.dev/algorithm": algorithm}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": metadata,
            "spec": {"runtimeRef": {"name": runtime, "kind": "ClusterTrainingRuntime",
                                    "apiGroup": "trainer.kubeflow.org"},
                     "trainer": trainer}}


def run_trainjob(manifest: dict, *, api=None, timeout_s: float = 24 * 3600, poll_s: float = 15, log=print) -> dict:
    """Create the TrainJob (or follow the one of that name) and wait until it is Complete: its status. A Failed TrainJob, or one
    not complete within `timeout_s`, raises kfts.kube.Failed with its reason."""
    from kfts import kube
    api = api or kube.custom_objects()
    manifest = {**manifest, "metadata": {"namespace": kube.own_namespace(), **manifest["metadata"]}}
    kube.apply(api, kube.TRAIN_JOB, manifest, replace=False, log=log)
    return kube.wait_for(api, kube.TRAIN_JOB, manifest["metadata"]["name"], manifest["metadata"]["namespace"],
                         success="Complete", failure="Failed", timeout_s=timeout_s, poll_s=poll_s, log=log)
