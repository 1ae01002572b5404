"""What the pipelines share: where tasks run on a cluster (GPU node pools, requests and limits, images, the
object store's credentials, the security context, retries, checkpoints), the input validation fan-in and the
steps after training."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from kfp import dsl, kubernetes

from kfts.core.errors import InputError
from kfts.kubeflow.components import (
    batch_predict,
    check_inputs,
    choose_champion,
    combine_members,
    deploy,
    evaluate,
    fetch_model,
    member_indices,
    promote_model,
    train,
    train_on_trainjob,
    validate_csv,
)
from kfts.kubeflow.deploy import GPU_TOLERATIONS, check_names
from kfts.kubeflow.images import base_image, component_image
from kfts.kubeflow.trainjob import CHECKPOINT_MOUNT

# every step's name (the component's, as the IR and `--resources STEP=...` name it)
STEPS = tuple(
    c.component_spec.name
    for c in (
        validate_csv,
        check_inputs,
        fetch_model,
        train,
        train_on_trainjob,
        member_indices,
        combine_members,
        evaluate,
        batch_predict,
        choose_champion,
        promote_model,
        deploy,
    )
)
# the steps that read or write the object store themselves (pyarrow; deploy checks the Secret's endpoint against
# KServe's annotations): the others get their inputs and hand on
# their outputs through KFP's launcher, which has the pipeline root's credentials of its own
STORAGE_STEPS = ("validate-csv", "fetch-model", "promote-model", "train-on-trainjob", "deploy")
# the object-store Secret's keys (the project's convention), each given to the pod as the env var of its name
STORAGE_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
STORAGE_OPTIONAL_KEYS = ("AWS_ENDPOINT_URL", "AWS_REGION")
IMAGE_USER = 1000  # the user and group the kfts images run as (images/Dockerfile: USER 1000:1000)


@dataclass(frozen=True)
class Resources:
    """A task's CPU and memory requests and limits, as Kubernetes quantities."""

    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str

    def __post_init__(self):
        for name in ("cpu", "cpu_limit", "memory", "memory_limit"):
            kind = "cpu" if name.startswith("cpu") else "memory"
            if not _QUANTITY[kind].fullmatch(getattr(self, name)):
                raise InputError(
                    f"{name} {getattr(self, name)!r} is not a Kubernetes quantity "
                    + ("(e.g. 2, 0.5, 500m)" if kind == "cpu" else "(e.g. 512Mi, 8Gi)")
                )
        for request, limit in (("cpu", "cpu_limit"), ("memory", "memory_limit")):
            if _amount(getattr(self, request)) > _amount(getattr(self, limit)):
                raise InputError(
                    f"{request} {getattr(self, request)} is more than {limit} "
                    f"{getattr(self, limit)}: Kubernetes refuses such a pod"
                )


# what both KFP (PipelineTask.set_cpu_request, set_memory_request) and Kubernetes accept
_QUANTITY = {"cpu": re.compile(r"([0-9]*[.])?[0-9]+m?"), "memory": re.compile(r"[0-9]+(Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?")}
_SCALE = {
    "m": 1e-3,
    "": 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def _amount(quantity: str) -> float:
    match = re.match(r"[0-9.]*", quantity)
    assert match is not None  # * matches the empty text too
    number = match.group()
    return float(number) * _SCALE[quantity[len(number) :]]


# Requests and limits unless --resources says otherwise: the steps that parse data, train or predict get a
# share of a node, the bookkeeping steps little. Limits are set so that namespaces whose LimitRange or
# ResourceQuota asks for them admit the pods; memory limits equal the requests where a step's peak is its data.
WORK = Resources(cpu="2", memory="8Gi", cpu_limit="4", memory_limit="8Gi")
LIGHT = Resources(cpu="500m", memory="1Gi", cpu_limit="1", memory_limit="2Gi")
WORK_STEPS = ("validate-csv", "train", "combine-members", "evaluate", "batch-predict")


def default_resources() -> dict[str, Resources]:
    return {step: WORK if step in WORK_STEPS else LIGHT for step in STEPS}


@dataclass
class Cluster:
    """Compile-time placement of the tasks on a Kubernetes cluster.

    gpus > 0 puts train and batch-predict on GPUs: they request `gpus` x `accelerator`, tolerate
    `tolerations` (by default the taint GPU node pools carry) and, when given, carry `node_selector`; with
    gpus = 0 none of that is in the pipeline. Every task requests and is limited to its step's `resources`
    (default_resources()). Tasks run `image` (GPU tasks its -cuda twin, kfts.kubeflow.images), the defaults of the
    pipeline's `image` and `gpu_image` parameters, which a run may change (for_run). The steps that touch the
    object store get the Secret `storage_secret` (when given) as env vars (STORAGE_KEYS, STORAGE_OPTIONAL_KEYS).
    Every task runs as the images' non-root user (IMAGE_USER). train is retried `retries` times; given a
    PersistentVolumeClaim `checkpoint_pvc`, it keeps its training state there after every epoch (mounted at
    /kfts-checkpoints, one folder per run and member), so a retry after a preempted node resumes from the
    last finished epoch; the claim must exist beforehand (pipelines/checkpoints-pvc.yaml) and be
    ReadWriteMany when members fan out over nodes. Without one a retry starts training again.
    trainjob_nodes > 0 trains on Kubeflow Trainer instead (train_step): each torchrun process gets the train
    step's resources, and the TrainJob keeps its checkpoints on the same claim. The deploy step writes the
    `deployment_mode` (empty: the cluster's) by the name KServe `kserve_version` knows it by (kfts.kubeflow.deploy),
    and waits up to `deploy_timeout_minutes` for the new model to serve.
    """

    gpus: int = 0
    accelerator: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=lambda: [dict(t) for t in GPU_TOLERATIONS])
    resources: dict[str, Resources] = field(default_factory=default_resources)
    image: str = field(default_factory=base_image)
    gpu_image: str = ""
    storage_secret: str = ""
    retries: int = 3
    checkpoint_pvc: str = ""
    trainjob_nodes: int = 0
    trainjob_procs_per_node: int = 1
    trainjob_runtime: str = "kfts-torch"
    kserve_version: str = ""
    deployment_mode: str = ""
    deploy_timeout_minutes: float = 30.0

    def __post_init__(self):
        self.gpu_image = self.gpu_image or component_image(gpu=True, base=self.image)
        check_names(
            {
                "--storage-secret": self.storage_secret or None,
                "--checkpoint-pvc": self.checkpoint_pvc or None,
                "--trainjob-runtime": self.trainjob_runtime,
            }
        )

    @property
    def checkpoint_root(self) -> str:
        return CHECKPOINT_MOUNT if self.checkpoint_pvc else ""


def images(cluster: Cluster | None) -> tuple[str, str]:
    """The defaults of a pipeline's `image` and `gpu_image` parameters."""
    cluster = cluster or Cluster()
    return cluster.image, cluster.gpu_image


def for_run(cluster: Cluster | None, image, gpu_image) -> Cluster | None:
    """`cluster` with the tasks' images taken from the run's `image` and `gpu_image` parameters: kfp 2.17's
    PipelineTask.set_container_image takes a pipeline parameter, which KFP's driver resolves when it starts
    the task (backend/src/v2/driver/driver.go, resolvePodSpecInputRuntimeParameter, since KFP 2.4.0).
    None (kfp.local) stays None: local runs use the components' own image."""
    return cluster and replace(cluster, image=image, gpu_image=gpu_image)


def place(task: dsl.PipelineTask, cluster: Cluster | None, *, gpu: bool = False) -> dsl.PipelineTask:
    """Requests and limits, image, object-store credentials and security context, and for `gpu` tasks the
    GPUs and their node pool (see Cluster). `cluster=None` (kfp.local runs): nothing."""
    if cluster is None:
        return task
    step = task.component_spec.name
    resources = cluster.resources[step]
    task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory_limit)
    on_gpu = gpu and cluster.gpus > 0
    task.set_container_image(cluster.gpu_image if on_gpu else cluster.image)
    if on_gpu:
        task.set_accelerator_type(cluster.accelerator).set_accelerator_limit(cluster.gpus)
        for key, value in cluster.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in cluster.tolerations:
            kubernetes.add_toleration(task, **toleration)
    if cluster.storage_secret and step in STORAGE_STEPS:
        kubernetes.use_secret_as_env(task, cluster.storage_secret, {key: key for key in STORAGE_KEYS})
        kubernetes.use_secret_as_env(
            task, cluster.storage_secret, {key: key for key in STORAGE_OPTIONAL_KEYS}, optional=True
        )
    # Pod Security "restricted": KFP's backend (2.16 and later) adds seccompProfile RuntimeDefault,
    # allowPrivilegeEscalation false and drops every capability; runAsNonRoot is the task's to set
    kubernetes.set_security_context(task, run_as_user=IMAGE_USER, run_as_group=IMAGE_USER, run_as_non_root=True)
    return task


def train_step(
    cluster: Cluster | None, name: str, after: dsl.PipelineTask, init_model_uri, **inputs
) -> dsl.PipelineTask:
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
    task = train_on_trainjob(
        **inputs,
        nodes=cluster.trainjob_nodes,
        gpus_per_node=cluster.gpus,
        procs_per_node=cluster.gpus or cluster.trainjob_procs_per_node,
        image=cluster.gpu_image if cluster.gpus else cluster.image,
        runtime=cluster.trainjob_runtime,
        cpu=cluster.resources["train"].cpu,
        memory=cluster.resources["train"].memory,
        checkpoint_pvc=cluster.checkpoint_pvc,
        storage_secret=cluster.storage_secret,
    )
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


def validate_inputs(algorithm: str, cluster: Cluster | None, **uris: tuple[str, str]) -> tuple[dict, dsl.PipelineTask]:
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
    checked = check_inputs(
        algorithm=algorithm,
        train=outputs["train"],
        valid=outputs["valid"],
        test=outputs[scored],
        test_labels=outputs[scored + "_labels"],
        test_name=scored,
    )
    return outputs, place(side_effect(checked.set_display_name("check inputs together")), cluster)


@dataclass
class Serving:
    """Pipeline parameters of the deploy step (deploy_* in the pipelines' signatures). An empty
    predictor_image is the predictor image of the one the pipeline was compiled for: -predictor-cuda when
    `gpu`, else -predictor (kfts.kubeflow.images)."""

    name: object
    namespace: object
    predictor_image: object
    gpu: object
    min_replicas: object
    max_replicas: object


def deploy_task(model, serving: Serving, cluster: Cluster | None) -> dsl.PipelineTask:
    """The deploy step. The GPU node pool's selector and tolerations are passed along, and used only when the
    predictor asks for a GPU (serving.gpu): a CPU predictor is never pinned to GPU nodes."""
    return deploy(
        model=model,
        name=serving.name,
        namespace=serving.namespace,
        predictor_image=serving.predictor_image,
        image_base=cluster.image if cluster else base_image(),
        gpu=serving.gpu,
        node_selector=cluster.node_selector if cluster else {},
        tolerations=cluster.tolerations if cluster else [],
        min_replicas=serving.min_replicas,
        max_replicas=serving.max_replicas,
        **(
            {
                "kserve_version": cluster.kserve_version,
                "deployment_mode": cluster.deployment_mode,
                "timeout_minutes": float(cluster.deploy_timeout_minutes),
                "storage_secret": cluster.storage_secret,
            }
            if cluster
            else {}
        ),
    )


def after_training(
    *,
    model,
    data: dict,
    valid: str,
    test: str,
    test_labels: str,
    valid_metric: str,
    test_metric: str,
    passes_gate,
    deploy_wanted,
    serving: Serving,
    predict_options: dict,
    cluster: Cluster | None,
) -> None:
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
            scored = evaluate(
                model=model, data=data["test"], labels=data["test_labels"], metric=test_metric, split="test"
            )
            place(scored.set_display_name("evaluate test"), cluster)
