"""train-on-trainjob: the train step on Kubeflow Trainer, for training on several nodes (kfts.kubeflow.trainjob)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfts.kubeflow.components.settings import IMAGE, fail, present


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, present])
def train_on_trainjob(
    algorithm: str,
    train_data: Input[Dataset],
    valid_data: Input[Dataset],
    init_model: Input[Model],
    hyperparameters: dict,
    seed: int,
    run_id: str,
    model: Output[Model],
    metrics: Output[Metrics],
    nodes: int = 2,
    procs_per_node: int = 1,
    gpus_per_node: int = 0,
    image: str = "",
    runtime: str = "kfts-torch",
    namespace: str = "",
    env: dict = {},
    timeout_hours: float = 24.0,
    cpu: str = "2",
    memory: str = "8Gi",
    storage_secret: str = "",
    service_account: str = "",
    checkpoint_pvc: str = "",
):
    """Train `algorithm` as a TrainJob of `nodes` x `procs_per_node` torchrun processes (one per GPU with
    `gpus_per_node`), wait for it, and hand on its model as this step's Model, as the train step does.

    The TrainJob's pods read the validated data and write the model next to this step's Model in the
    pipeline root (object store URIs), with the identity of `storage_secret` (its keys as env) and of
    `service_account`; `env`, e.g. the store's endpoint, is set in their container. Each process gets `cpu`
    and `memory`. With `checkpoint_pvc` (a ReadWriteMany claim) training keeps its state there after every
    epoch, in a folder named after the run. A retried step follows the TrainJob an earlier attempt created
    (named after the run) while it runs, and after a Failed one creates a fresh one, which resumes from that
    folder; a failed TrainJob fails the step with its reason.
    """
    from kfts.core import storage
    from kfts.core.artifact import read_manifest
    from kfts.core.errors import InputError
    from kfts.kubeflow import kube
    from kfts.kubeflow.trainjob import render_trainjob, run_trainjob

    # the artifacts' URIs as KFP names them (minio:// for its own store), which kfts in the pods reads as this step does
    staging = model.uri + "-trainjob"
    try:
        manifest = render_trainjob(
            name=f"kfts-{run_id}"[:63].rstrip("-"),
            algorithm=algorithm,
            train_uri=train_data.uri,
            valid_uri=valid_data.uri if present(valid_data) else "",
            model_uri=staging,
            init_model_uri=init_model.uri if present(init_model) else "",
            hyperparameters=hyperparameters,
            seed=seed,
            nodes=nodes,
            procs_per_node=procs_per_node,
            gpus_per_node=gpus_per_node,
            image=image or None,
            runtime=runtime,
            namespace=namespace or None,
            env=env or None,
            cpu=cpu,
            memory=memory,
            storage_secret=storage_secret or None,
            service_account=service_account or None,
            checkpoint_pvc=checkpoint_pvc or None,
        )
        trainjob = run_trainjob(manifest, timeout_s=timeout_hours * 3600)
        storage.copy(staging, model.path)
    except InputError as e:
        fail(e)
    except kube.Failed as e:  # the cluster's answer, not the user's input: exit 1
        print(f"error: {e}", flush=True)
        raise SystemExit(1) from None
    trained = read_manifest(model.path)
    model.metadata.update(
        {
            "algorithm": algorithm,
            "framework": "pytorch",
            "trainjob": trainjob["metadata"]["name"],
            "hyperparameters": trained["hyperparameters"],
        }
    )
    for name, value in trained.get("metrics", {}).items():
        metrics.log_metric(name, value)
