"""What the pipelines share: where tasks run on a cluster (GPU node pools, requests, retries, checkpoints),
the input validation fan-in and the steps after training."""

from __future__ import annotations

from dataclasses import dataclass, field

from kfp import dsl, kubernetes

from kfts.components import (batch_predict, check_inputs, deploy, evaluate, fetch_model, train, train_on_trainjob,
                             validate_csv)
from kfts.deploy import GPU_TOLERATIONS
from kfts.images import base_image, component_image
from kfts.trainjob import CHECKPOINT_MOUNT


@dataclass
class Cluster:
    """Compile-time placement of the tasks on a Kubernetes cluster.

    gpus > 0 puts train and batch-predict on the GPU node pool: they request `gpus` x `accelerator` and carry
    `node_selector` and `tolerations`; with gpus = 0 none of that is in the pipeline. Every task requests
    `cpu` and `memory`. train is retried `retries` times and keeps its training state after every epoch on the
    PersistentVolumeClaim `checkpoint_pvc` (mounted at /kfts-checkpoints, one folder per run and member), so
    a retry after a preempted node resumes from the last finished epoch; the claim must exist beforehand
    (pipelines/checkpoints-pvc.yaml) and be ReadWriteMany when members fan out over nodes. An empty
    checkpoint_pvc compiles without checkpoints: a retry then starts training again. trainjob_nodes > 0 trains
    on Kubeflow Trainer instead (train_step): each torchrun process requests `cpu` and `memory`, and the
    TrainJob keeps its checkpoints on the same claim. The deploy step writes the `deployment_mode` (empty: the
    cluster's) by the name KServe `kserve_version` knows it by (kfts.deploy), and waits up to
    `deploy_timeout_minutes` for the new model to serve.
    """

    gpus: int = 0
    accelerator: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict] = field(default_factory=lambda: [dict(t) for t in GPU_TOLERATIONS])
    cpu: str = "2"
    memory: str = "8Gi"
    retries: int = 3
    checkpoint_pvc: str = "kfts-checkpoints"
    trainjob_nodes: int = 0
    trainjob_procs_per_node: int = 1
    trainjob_runtime: str = "kfts-torch"
    kserve_version: str = ""
    deployment_mode: str = ""
    deploy_timeout_minutes: float = 30.0

    @property
    def checkpoint_root(self) -> str:
        return CHECKPOINT_MOUNT if self.checkpoint_pvc else ""


def place(task: dsl.PipelineTask, cluster: Cluster | None, *, gpu: bool = False) -> dsl.PipelineTask:
    """Requests, and for `gpu` tasks the GPU node pool and the CUDA image (kfts.images). `cluster=None`
    (kfp.local runs): nothing."""
    if cluster is None:
        return task
    task.set_cpu_request(cluster.cpu).set_memory_request(cluster.memory)
    if gpu and cluster.gpus > 0:
        task.set_container_image(component_image(gpu=True))
        task.set_accelerator_type(cluster.accelerator).set_accelerator_limit(cluster.gpus)
        for key, value in cluster.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in cluster.tolerations:
            kubernetes.add_toleration(task, **toleration)
    return task


def train_step(cluster: Cluster | None, name: str, after: dsl.PipelineTask, init_model_uri,
               **inputs) -> dsl.PipelineTask:
    """The train task: in the pipeline's own pod (GPU pool, retries, checkpoint volume), or with
    cluster.trainjob_nodes a TrainJob on Kubeflow Trainer over that many nodes (one process per GPU, or
    trainjob_procs_per_node on CPUs), which a small pod creates and follows (a retry of that pod follows the
    same TrainJob). `name`: its display name; it runs `after` the inputs' cross-check and continues from the
    model at `init_model_uri` (fetched first; empty: none). `inputs` are the train component's others."""
    previous = place(side_effect(fetch_model(uri=init_model_uri).set_display_name("fetch init model")), cluster)
    inputs["init_model"] = previous.outputs["model"]
    if cluster is None or not cluster.trainjob_nodes:
        return resumable(place(train(**inputs).set_display_name(name).after(after), cluster, gpu=True), cluster)
    inputs.pop("checkpoint_root")
    task = train_on_trainjob(**inputs, nodes=cluster.trainjob_nodes, gpus_per_node=cluster.gpus,
                             procs_per_node=cluster.gpus or cluster.trainjob_procs_per_node,
                             runtime=cluster.trainjob_runtime, cpu=cluster.cpu, memory=cluster.memory,
                             checkpoint_pvc=cluster.checkpoint_pvc)
    task.set_display_name(f"{name} (TrainJob)").after(after)
    return place(task, cluster).set_retry(num_retries=cluster.retries, backoff_duration="30s", backoff_factor=2.0)


def resumable(task: dsl.PipelineTask, cluster: Cluster | None) -> dsl.PipelineTask:
    """A training task: retried with backoff, its checkpoint folder on the claim (see Cluster)."""
    if cluster is None:
        return task
    task.set_retry(num_retries=cluster.retries, backoff_duration="30s", backoff_factor=2.0)
    if cluster.checkpoint_pvc:
        kubernetes.mount_pvc(task, pvc_name=cluster.checkpoint_pvc, mount_path=CHECKPOINT_MOUNT)
    return task


def side_effect(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Tasks that read something that changes under the same URI, or change the world: never cached."""
    return task.set_caching_options(False)


def validate_inputs(algorithm: str, cluster: Cluster | None, **uris: tuple[str, str]
                    ) -> tuple[dict, dsl.PipelineTask]:
    """One validate-csv task per input, all independent (they run in parallel), then one check-inputs task
    that compares them: ({name: Dataset output}, the check-inputs task, which training must run after).
    `uris` maps a name to (pipeline parameter, layout): train, valid, the data scored after training (test,
    or holdout) and its labels (NAME_labels)."""
    outputs = {}
    for name, (uri, layout) in uris.items():
        task = validate_csv(algorithm=algorithm, uri=uri, layout=layout)
        task.set_display_name(f"validate {name.replace('_', ' ')}")
        outputs[name] = place(side_effect(task), cluster).outputs["data"]
    [scored] = [name for name in outputs if name not in ("train", "valid") and not name.endswith("_labels")]
    checked = check_inputs(algorithm=algorithm, train=outputs["train"], valid=outputs["valid"],
                           test=outputs[scored], test_labels=outputs[scored + "_labels"], test_name=scored)
    return outputs, place(side_effect(checked.set_display_name("check inputs together")), cluster)


@dataclass
class Serving:
    """Pipeline parameters of the deploy step (deploy_* in the pipelines' signatures). An empty
    predictor_image is the predictor image of the one the pipeline was compiled for: -predictor-cuda when
    `gpu`, else -predictor (kfts.images)."""

    name: object
    namespace: object
    predictor_image: object
    gpu: object
    min_replicas: object
    max_replicas: object


def deploy_task(model, serving: Serving, cluster: Cluster | None) -> dsl.PipelineTask:
    """The deploy step. The GPU node pool's selector and tolerations are passed along, and used only when the
    predictor asks for a GPU (serving.gpu): a CPU predictor is never pinned to GPU nodes."""
    return deploy(model=model, name=serving.name, namespace=serving.namespace,
                  predictor_image=serving.predictor_image, image_base=base_image(), gpu=serving.gpu,
                  node_selector=cluster.node_selector if cluster else {},
                  tolerations=cluster.tolerations if cluster else [],
                  min_replicas=serving.min_replicas, max_replicas=serving.max_replicas,
                  **({"kserve_version": cluster.kserve_version, "deployment_mode": cluster.deployment_mode,
                      "timeout_minutes": float(cluster.deploy_timeout_minutes)} if cluster else {}))


def after_training(*, model, data: dict, valid: str, test: str, test_labels: str, valid_metric: str,
                   test_metric: str, passes_gate, deploy_wanted, serving: Serving, predict_options: dict,
                   cluster: Cluster | None) -> None:
    """evaluate (valid; test when it has labels) -> batch-predict (when test is given) -> deploy (when asked
    and the validation metric passes `passes_gate(score)`)."""
    with dsl.If(valid != "", "valid-given"):
        scored = place(evaluate(model=model, data=data["valid"], metric=valid_metric, split="valid"), cluster)
        scored.set_display_name("evaluate valid")
        with dsl.If(deploy_wanted == True, "deploy-asked"):  # noqa: E712 (a pipeline condition, not Python)
            with dsl.If(passes_gate(scored.outputs["Output"]), "metric-passes"):
                side_effect(place(deploy_task(model, serving, cluster).set_display_name("deploy"), cluster))
    with dsl.If(test != "", "test-given"):
        predicted = batch_predict(model=model, data=data["test"], options=predict_options)
        predicted.set_display_name("batch-predict test")
        place(predicted, cluster, gpu=True)
        with dsl.If(test_labels != "", "test-labelled"):
            scored = evaluate(model=model, data=data["test"], labels=data["test_labels"], metric=test_metric,
                              split="test")
            place(scored.set_display_name("evaluate test"), cluster)
