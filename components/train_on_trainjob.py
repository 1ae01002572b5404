"""train-on-trainjob: the train step on Kubeflow Trainer, for training on several nodes (kfts.trainjob)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfts.components.settings import IMAGE, fail, present


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, present])
def train_on_trainjob(algorithm: str, train_data: Input[Dataset], valid_data: Input[Dataset], init_model: Input[Model],
                      hyperparameters: dict, seed: int, run_id: str, model: Output[Model], metrics: Output[Metrics],
                      nodes: int = 2,
                      procs_per_node: int = 1, gpus_per_node: int = 0, image: str = "",
                      runtime: str = "torch-distributed", namespace: str = "", env: dict = {},
                      timeout_hours: float = 24.0):
    """Train `algorithm` as a TrainJob of `nodes` x `procs_per_node` torchrun processes (one per GPU with
    `gpus_per_node`), wait for it, and hand on its model as this step's Model, as the train step does.

    The TrainJob's pods read the validated data and write the model next to this step's Model in the
    pipeline root (object store URIs; `env`, e.g. the store's endpoint, is set in their container): the
    runtime must give them access to it. A retried step follows the TrainJob its first attempt created
    (named after the run), and a failed TrainJob fails the step with its reason.
    """
    from kfts import kube, storage
    from kfts.artifact import read_manifest
    from kfts.errors import InputError
    from kfts.trainjob import render_trainjob, run_trainjob

    def uri(artifact) -> str:  # minio:// is KFP's name for its MinIO's S3 API
        return artifact.uri.replace("minio://", "s3://", 1)

    staging = uri(model) + "-trainjob"
    try:
        manifest = render_trainjob(
            name=f"kfts-{run_id}"[:63].rstrip("-"), algorithm=algorithm, train_uri=uri(train_data),
            valid_uri=uri(valid_data) if present(valid_data) else "", model_uri=staging,
            init_model_uri=uri(init_model) if present(init_model) else "",
            hyperparameters=hyperparameters, seed=seed, nodes=nodes, procs_per_node=procs_per_node,
            gpus_per_node=gpus_per_node, image=image or None, runtime=runtime, namespace=namespace or None,
            env=env or None)
        run_trainjob(manifest, timeout_s=timeout_hours * 3600)
        storage.copy(staging, model.path)
    except InputError as e:
        fail(e)
    except kube.Failed as e:  # the cluster's answer, not the user's input: exit 1
        print(f"error: {e}", flush=True)
        raise SystemExit(1)
    trained = read_manifest(model.path)
    model.metadata.update({"algorithm": algorithm, "framework": "pytorch", "trainjob": manifest["metadata"]["name"],
                           "hyperparameters": trained["hyperparameters"]})
    for name, value in trained.get("metrics", {}).items():
        metrics.log_metric(name, value)
