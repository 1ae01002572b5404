"""Retraining (champion / challenger), for either algorithm: train a challenger on new data, evaluate it and
the current model (the champion, a model directory at champion_uri) on the same held-out data, and promote
the challenger only when it is strictly better: it becomes the champion at champion_uri (in an object store a
new version, then the pointer to it: docs/ARTIFACT.md) and, when asked, is deployed.
Both scores are recorded (the choose-champion step's metrics). Scheduled as a recurring run
(`kfts pipeline schedule`), this is scheduled retraining: every run reads the latest data at the same URIs.

metric / higher_is_better: the held-out figure that decides (default: the algorithm's holdout_metric,
inception-time accuracy, lstm-ad roc_auc, which needs holdout_labels_uri; without labels use metric="mse",
higher_is_better=False).
hyperparameters: Params field names and values (missing ones keep their defaults). init_model_uri: start the
challenger from that model (usually champion_uri itself) instead of from scratch. image, gpu_image: the images
the tasks run (pipelines.common.for_run).
"""

from kfp import dsl

from kfts.algorithms import spec
from kfts.kubeflow.components import choose_champion, evaluate, fetch_model, promote_model
from kfts.kubeflow.pipelines.common import (
    Cluster,
    Serving,
    deploy_task,
    for_run,
    images,
    place,
    side_effect,
    train_step,
    validate_inputs,
)


def build(algorithm: str, cluster: Cluster | None = None):
    """The retraining pipeline function for `algorithm`. cluster=None: for kfp.local."""
    chosen = spec(algorithm)
    checkpoint_root = cluster.checkpoint_root if cluster else ""
    image_default, gpu_image_default = images(cluster)
    gpu = cluster is not None and cluster.gpus > 0

    @dsl.pipeline(
        name=f"retrain-{algorithm}",
        description=f"Champion/challenger retraining of a {algorithm} model: promote only a better model",
    )
    def retraining(
        champion_uri: str,
        train_uri: str,
        holdout_uri: str,
        valid_uri: str = "",
        holdout_labels_uri: str = "",
        hyperparameters: dict = {},
        seed: int = 0,
        init_model_uri: str = "",
        checkpoint_root: str = checkpoint_root,
        metric: str = chosen.holdout_metric,
        higher_is_better: bool = True,
        deploy_promoted: bool = False,
        deploy_name: str = algorithm,
        deploy_namespace: str = "",
        deploy_image: str = "",
        deploy_gpu: bool = gpu,
        deploy_min_replicas: int = 1,
        deploy_max_replicas: int = 1,
        image: str = image_default,
        gpu_image: str = gpu_image_default,
    ):
        placed = for_run(cluster, image, gpu_image)  # the run's images
        # labelled rows where the algorithm has them (no holdout labels then), else series and their labels
        holdout_layout = chosen.evaluation_layout(separate_labels=not chosen.labeled_layout)
        data, checked = validate_inputs(
            algorithm,
            placed,
            train=(train_uri, "training"),
            valid=(valid_uri, "training"),
            holdout=(holdout_uri, holdout_layout),
            holdout_labels=(holdout_labels_uri, "labels"),
        )
        champion = place(side_effect(fetch_model(uri=champion_uri).set_display_name("fetch champion")), placed)
        challenger = train_step(
            placed,
            "train challenger",
            checked,
            init_model_uri,
            algorithm=algorithm,
            train_data=data["train"],
            valid_data=data["valid"],
            hyperparameters=hyperparameters,
            seed=seed,
            checkpoint_root=checkpoint_root,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).outputs["model"]

        scores = {}
        for name, model in (("challenger", challenger), ("champion", champion.outputs["model"])):
            task = evaluate(
                model=model,
                data=data["holdout"],
                labels=data["holdout_labels"],
                metric=metric,
                split=f"holdout, {name}",
            )
            scores[name] = place(task.set_display_name(f"evaluate {name}"), placed).outputs["Output"]
        choice = choose_champion(
            challenger_score=scores["challenger"],
            champion_score=scores["champion"],
            higher_is_better=higher_is_better,
            metric=metric,
        )
        place(side_effect(choice.set_display_name("choose champion")), placed)
        with dsl.If(choice.outputs["Output"] == True, "challenger-wins"):  # noqa: E712 (a pipeline condition)
            promote = promote_model(model=challenger, uri=champion_uri).set_display_name("promote challenger")
            place(side_effect(promote), placed)
            with dsl.If(deploy_promoted == True, "deploy-asked"):  # noqa: E712
                serving = Serving(
                    deploy_name, deploy_namespace, deploy_image, deploy_gpu, deploy_min_replicas, deploy_max_replicas
                )
                side_effect(place(deploy_task(challenger, serving, placed).set_display_name("deploy"), placed))

    return retraining
