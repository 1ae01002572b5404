"""Training on Kubeflow Trainer: a TrainJob (trainer.kubeflow.org/v1alpha1) on a ClusterTrainingRuntime, kfts's
own by default (render_training_runtime, `kfts deploy render --kind ClusterTrainingRuntime`), which starts the
trainer's command on every node with torchrun's settings in PET_* variables. `kfts deploy render --kind
TrainJob` writes one; the pipelines' TrainJob train step creates one and waits for it (run_trainjob).

Each node fetches the data (`kfts copy`), runs `torchrun -m kfts train ...` (kfts.core.distributed shares the work
out) and the node that holds global rank 0, the one with the model, copies it to `model_uri`.

How Trainer uses the runtime (kubeflow/trainer v2.3.0, pkg/runtime/framework/plugins/torch/torch.go): the
replicated job `node`, labelled trainjob-ancestor-step=trainer, runs numNodes pods whose container `node`
gets the TrainJob's image, command, resourcesPerNode and env, plus PET_NNODES, PET_NPROC_PER_NODE,
PET_NODE_RANK, PET_MASTER_ADDR (`<trainjob>-node-0-0.<trainjob>`) and PET_MASTER_PORT, which torchrun reads as
its arguments. The TrainJob cannot set envFrom, nor env of `node` through runtimePatches: the object-store
secret comes in as env entries (kfts.kubeflow.kube.secret_env); the service account and the checkpoint claim through
runtimePatches (Trainer v2.2.0 and later).
"""

from __future__ import annotations

import shlex
from dataclasses import fields
from decimal import Decimal
from typing import Any

from kfts.core.errors import InputError
from kfts.kubeflow import podsecurity
from kfts.kubeflow.deploy import check_name, check_names, check_quantity, check_uris

WORK = "/tmp/kfts"  # inside the trainer's container: /tmp is the runtime's writable emptyDir
RUNTIME = "kfts-torch"  # the ClusterTrainingRuntime render_training_runtime writes
CHECKPOINT_MOUNT = "/kfts-checkpoints"  # where a checkpoint claim is mounted, here as in the pipelines' tasks
PER_PROCESS = {"cpu": "2", "memory": "8Gi"}  # a training process's requests and limits, by default
PATCH_MANAGER = "kfts.dev/trainjob"  # the owner of kfts's runtimePatches entry (a domain-prefixed path)


def render_training_runtime(
    *, name: str = RUNTIME, image: str | None = None, gpu: bool = False, max_restarts: int = 3
) -> dict:
    """kfts's ClusterTrainingRuntime: torchrun on `numNodes` pods of the kfts image (`gpu`: its CUDA build).

    Pods run without Istio's sidecar: torchrun's rendezvous and NCCL connect pod to pod on ports the sidecar
    would intercept (kubeflow/trainer#2794). /dev/shm is a memory emptyDir (NCCL and the data loaders share
    memory there; a container's default is 64 MiB), /tmp another emptyDir (the root filesystem is read-only).
    A failed node fails its Job at once (backoffLimit 0) and JobSet restarts all nodes, up to `max_restarts`
    times: torchrun's static rendezvous cannot take one node back alone, and a shared --checkpoint-dir lets
    the restarted run resume from its last finished epoch. The node's resources are one process's
    (PER_PROCESS), for a TrainJob that sets no resourcesPerNode.
    """
    from kfts.kubeflow.images import component_image

    check_names({"--name": name})
    resources = {"requests": dict(PER_PROCESS), "limits": dict(PER_PROCESS)}
    container = podsecurity.harden(
        {"name": "node", "image": image or component_image(gpu=gpu), "resources": resources},
        mounts=[{"name": "dshm", "mountPath": "/dev/shm"}],
    )
    pod = {
        "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {
            "securityContext": podsecurity.pod_context(),
            "containers": [container],
            "volumes": [dict(podsecurity.SCRATCH), {"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        },
    }
    job = {
        "name": "node",
        "template": {
            "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
            "spec": {"backoffLimit": 0, "template": pod},
        },
    }
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {
            "name": name,
            "labels": {"trainer.kubeflow.org/framework": "torch", "app.kubernetes.io/name": "kfts"},
        },
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {"spec": {"failurePolicy": {"maxRestarts": max_restarts}, "replicatedJobs": [job]}},
        },
    }


def render_trainjob(
    *,
    name: str,
    algorithm: str,
    train_uri: str,
    model_uri: str,
    valid_uri: str = "",
    init_model_uri: str = "",
    hyperparameters: dict | None = None,
    seed: int = 0,
    nodes: int = 1,
    procs_per_node: int = 1,
    gpus_per_node: int = 0,
    image: str | None = None,
    runtime: str = RUNTIME,
    namespace: str | None = None,
    cpu: str = PER_PROCESS["cpu"],
    memory: str = PER_PROCESS["memory"],
    env: dict[str, str] | None = None,
    storage_secret: str | None = None,
    service_account: str | None = None,
    checkpoint_pvc: str | None = None,
    checkpoint_key: str | None = None,
) -> dict:
    """A TrainJob as a dict. `model_uri` is where the artifact goes; the data and the model are URIs every
    node can read and write (object store, or a path on a volume the runtime mounts); `init_model_uri` is a
    model to continue training from. `cpu` and `memory` are per process: a node asks for `procs_per_node`
    times them (and `gpus_per_node` GPUs). `env` is set in the trainer container (e.g. an object store's
    endpoint); `storage_secret` gives it the object-store identity (kfts.kubeflow.kube.STORAGE_SECRET_KEYS) and
    `service_account` runs its pods as that account. With `checkpoint_pvc` (a ReadWriteMany claim, mounted at
    CHECKPOINT_MOUNT) training keeps its state in the folder `checkpoint_key` (default `name`) there after
    every epoch, so that restarted nodes, or a later TrainJob with the same key, resume from it."""
    from kfts.algorithms import spec
    from kfts.kubeflow.images import component_image
    from kfts.kubeflow.kube import secret_env

    check_name(name, "--name")
    check_names(
        {
            "--namespace": namespace,
            "--training-runtime": runtime,
            "--storage-secret": storage_secret,
            "--service-account": service_account,
            "--checkpoint-pvc": checkpoint_pvc,
        }
    )
    if nodes < 1 or procs_per_node < 1 or gpus_per_node < 0:
        raise InputError(
            f"a TrainJob needs nodes >= 1 ({nodes}), processes per node >= 1 ({procs_per_node}) "
            f"and GPUs per node >= 0 ({gpus_per_node})"
        )
    if gpus_per_node and procs_per_node != gpus_per_node:
        raise InputError(
            f"with GPUs, one process per GPU: --procs-per-node {procs_per_node} should be "
            f"--gpus-per-node {gpus_per_node}"
        )
    known = {f.name for f in fields(spec(algorithm).Params)}
    unknown = sorted(set(hyperparameters or {}) - known)
    if unknown:
        raise InputError(f"unknown {algorithm} hyperparameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for what, uri in (("--train", train_uri), ("--model-uri", model_uri)):
        if not uri:
            raise InputError(f"{what} is empty: give a URI every training node reaches")
    check_uris({"--train": train_uri, "--valid": valid_uri, "--model-uri": model_uri})

    flags = [f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in (hyperparameters or {}).items()]
    fetch = [f"kfts copy {shlex.quote(train_uri)} {WORK}/train.csv"]
    train = (
        f"torchrun -m kfts train {algorithm} --train {WORK}/train.csv --model-dir {WORK}/model "
        f"--seed {int(seed)} --device {'cuda' if gpus_per_node else 'cpu'}"
    )
    if valid_uri:
        fetch.append(f"kfts copy {shlex.quote(valid_uri)} {WORK}/valid.csv")
        train += f" --valid {WORK}/valid.csv"
    if init_model_uri:
        fetch.append(f"kfts copy {shlex.quote(init_model_uri)} {WORK}/init-model")
        train += f" --init-model {WORK}/init-model"
    if checkpoint_pvc:
        train += f" --checkpoint-dir {shlex.quote(f'{CHECKPOINT_MOUNT}/{checkpoint_key or name}')}"
    script = " && ".join(
        [
            *fetch,
            " ".join([train, *flags]),
            # only the node of global rank 0 has the model
            f"if [ -d {WORK}/model ]; then kfts copy {WORK}/model {shlex.quote(model_uri)}; fi",
        ]
    )
    resources = {"cpu": _times(cpu, procs_per_node, "--cpu"), "memory": _times(memory, procs_per_node, "--memory")}
    if gpus_per_node:
        resources["nvidia.com/gpu"] = str(gpus_per_node)
    trainer = {
        "image": image or component_image(gpu=gpus_per_node > 0),
        "command": ["sh", "-c", script],
        "numNodes": nodes,
        "numProcPerNode": procs_per_node,
        "resourcesPerNode": {"requests": dict(resources), "limits": dict(resources)},
    }
    trainer_env = [{"name": k, "value": str(v)} for k, v in (env or {}).items()]
    if storage_secret:
        trainer_env += secret_env(storage_secret)
    if trainer_env:
        trainer["env"] = trainer_env
    metadata = {
        "name": name,
        "labels": {
            "app.kubernetes.io/name": "kfts",
            "app.kubernetes.io/component": "train",
            "kfts.dev/algorithm": algorithm,
        },
    }
    if namespace:
        metadata["namespace"] = namespace
    job = {
        "runtimeRef": {"name": runtime, "kind": "ClusterTrainingRuntime", "apiGroup": "trainer.kubeflow.org"},
        "trainer": trainer,
    }
    patch = _pod_patch(service_account, checkpoint_pvc)
    if patch:
        job["runtimePatches"] = [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [{"name": "node", "template": {"spec": {"template": {"spec": patch}}}}]
                        }
                    }
                },
            }
        ]
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": metadata, "spec": job}


def _pod_patch(service_account: str | None, checkpoint_pvc: str | None) -> dict:
    """The node pods' spec fields a TrainJob patches into its runtime's: the account, the checkpoint claim."""
    patch: dict[str, Any] = {}
    if service_account:
        patch["serviceAccountName"] = service_account
    if checkpoint_pvc:
        patch["volumes"] = [{"name": "kfts-checkpoints", "persistentVolumeClaim": {"claimName": checkpoint_pvc}}]
        patch["containers"] = [
            {"name": "node", "volumeMounts": [{"name": "kfts-checkpoints", "mountPath": CHECKPOINT_MOUNT}]}
        ]
    return patch


def _times(quantity: str, n: int, flag: str) -> str:
    """A Kubernetes quantity times n ("500m" x 4 = "2000m", "1.5Gi" x 3 = "4.5Gi")."""
    match = check_quantity(quantity.strip(), flag)
    return f"{(Decimal(match[1]) * n).normalize():f}{match[2] or ''}"


def run_trainjob(manifest: dict, *, api=None, timeout_s: float = 24 * 3600, poll_s: float = 15, log=print) -> dict:
    """Create the TrainJob and wait until it is Complete: the TrainJob as last read. A Failed TrainJob, or one
    not complete within `timeout_s`, raises kfts.kubeflow.kube.Failed with its reason.

    A retried step finds its earlier attempts' TrainJobs: it follows one that has not failed, and after a
    Failed one creates a fresh TrainJob (named NAME-2, NAME-3, ...), which resumes from the same checkpoint
    folder when there is one."""
    from kfts.kubeflow import kube

    api = api or kube.custom_objects()
    manifest = {**manifest, "metadata": {"namespace": kube.own_namespace(), **manifest["metadata"]}}
    namespace, base = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    attempt = 1
    while True:
        name = base if attempt == 1 else f"{base[: 60 - len(str(attempt))]}-{attempt}"
        existing = kube.get(api, kube.TRAIN_JOB, name, namespace)
        if existing is None:
            kube.create(api, kube.TRAIN_JOB, {**manifest, "metadata": {**manifest["metadata"], "name": name}}, log=log)
            break
        failed = kube.condition(existing, "Failed")
        if failed.get("status") != "True":
            log(f"TrainJob {namespace}/{name} exists: following it")
            break
        log(f"TrainJob {namespace}/{name} failed ({failed.get('reason', '')}): starting a fresh one")
        attempt += 1
    return kube.wait_for(
        api,
        kube.TRAIN_JOB,
        name,
        namespace,
        goal="Complete",
        reached=_complete,
        timeout_s=timeout_s,
        poll_s=poll_s,
        log=log,
    )


def _complete(trainjob: dict) -> bool:
    from kfts.kubeflow import kube

    failed = kube.condition(trainjob, "Failed")
    if failed.get("status") == "True":
        where = f"{trainjob['metadata']['namespace']}/{trainjob['metadata']['name']}"
        raise kube.Failed(f"TrainJob {where} failed: {failed.get('reason', '')}: {failed.get('message', '')}")
    return kube.condition(trainjob, "Complete").get("status") == "True"
