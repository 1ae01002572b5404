"""The InceptionTime pipeline: validate -> train (one task, or one task per member) -> evaluate ->
batch-predict -> deploy. Parameters: the data URIs, every hyperparameter of
kfts/algorithms/inception_time/params.py with its default, a previous model to continue from, the random seed,
the deploy step's settings, and the images the tasks run (image, gpu_image: pipelines.common.for_run)."""

from kfp import dsl

from kfts.algorithms.inception_time import InceptionTimeAlgorithm
from kfts.kubeflow.components import combine_members, fetch_model, member_indices, train
from kfts.kubeflow.pipelines.common import (
    Cluster,
    Serving,
    after_training,
    for_run,
    images,
    place,
    resumable,
    train_step,
    validate_inputs,
)

ALGORITHM = InceptionTimeAlgorithm.id


def build(cluster: Cluster | None = None, *, fan_out: bool = False):
    """The pipeline function. cluster=None: for kfp.local (no requests, GPUs, retries or volumes).

    fan_out: train the `models` members as parallel tasks (one GPU each on a GPU cluster), each a one-member
    ensemble seeded `seed + member`, and combine them into one artifact
    (kfts.algorithms.inception_time.ensemble.combine_members) that predicts exactly as an ensemble of those
    members trained in one task. A fan-out pipeline has no
    init_model: each member task would need its own slice of the previous ensemble.
    """
    checkpoint_root = cluster.checkpoint_root if cluster else ""
    image_default, gpu_image_default = images(cluster)
    gpu = cluster is not None and cluster.gpus > 0  # the deploy step then serves on the GPU node pool too

    @dsl.pipeline(
        name=ALGORITHM + ("-fan-out" if fan_out else ""),
        description="InceptionTime time-series classification: validate, train, evaluate, "
        "batch-predict, deploy" + (" (ensemble members trained in parallel)" if fan_out else ""),
    )
    def inception_time(
        train_uri: str,
        valid_uri: str = "",
        test_uri: str = "",
        test_labels_uri: str = "",
        filters: int = 32,
        depth: int = 6,
        models: int = 5,
        lr: float = 0.001,
        batch_size: int = 64,
        epochs: int = 100,
        schedule: str = "constant",
        ensemble: str = "auto",
        precision: str = "auto",
        early_stopping: int = 0,
        batch_norm_stats: str = "precise",
        seed: int = 0,
        init_model_uri: str = "",
        checkpoint_root: str = checkpoint_root,
        probabilities: bool = False,
        deploy: bool = False,
        deploy_min_accuracy: float = 0.0,
        deploy_name: str = ALGORITHM,
        deploy_namespace: str = "",
        deploy_image: str = "",
        deploy_gpu: bool = gpu,
        deploy_min_replicas: int = 1,
        deploy_max_replicas: int = 1,
        image: str = image_default,
        gpu_image: str = gpu_image_default,
    ):
        placed = for_run(cluster, image, gpu_image)  # the run's images
        data, checked = validate_inputs(
            ALGORITHM,
            placed,
            train=(train_uri, "training"),
            valid=(valid_uri, "training"),
            test=(test_uri, "inference"),
            test_labels=(test_labels_uri, "labels"),
        )
        hyperparameters = {
            "filters": filters,
            "depth": depth,
            "models": models,
            "lr": lr,
            "batch_size": batch_size,
            "epochs": epochs,
            "schedule": schedule,
            "ensemble": ensemble,
            "precision": precision,
            "early_stopping": early_stopping,
            "batch_norm_stats": batch_norm_stats,
        }
        common = {
            "algorithm": ALGORITHM,
            "train_data": data["train"],
            "valid_data": data["valid"],
            "seed": seed,
            "checkpoint_root": checkpoint_root,
            "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        }
        if fan_out:
            no_init = place(fetch_model(uri="").set_display_name("no init model"), placed).outputs["model"]
            indices = place(member_indices(models=models).set_display_name("list members"), placed)
            with dsl.ParallelFor(indices.output, name="members") as member:
                task = train(
                    **common,
                    init_model=no_init,
                    member=member,
                    hyperparameters={**hyperparameters, "models": 1, "ensemble": "sequential"},
                )
                resumable(place(task.set_display_name("train member").after(checked), placed, gpu=True), placed)
            combined = combine_members(
                members=dsl.Collected(task.outputs["model"]), train_data=data["train"], valid_data=data["valid"]
            ).set_display_name("combine members")
            model = place(combined, placed, gpu=True).outputs["model"]
        else:
            model = train_step(
                placed, "train", checked, init_model_uri, **common, hyperparameters=hyperparameters
            ).outputs["model"]

        after_training(
            model=model,
            data=data,
            valid=valid_uri,
            test=test_uri,
            test_labels=test_labels_uri,
            valid_metric="accuracy",
            test_metric="accuracy",
            passes_gate=lambda score: score >= deploy_min_accuracy,
            deploy_wanted=deploy,
            serving=Serving(
                deploy_name, deploy_namespace, deploy_image, deploy_gpu, deploy_min_replicas, deploy_max_replicas
            ),
            predict_options={"probabilities": probabilities},
            cluster=placed,
        )

    return inception_time
