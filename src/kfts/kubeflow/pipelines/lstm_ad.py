"""The LSTM-AD pipeline: validate -> train -> evaluate -> batch-predict -> deploy. Parameters: the data URIs,
every hyperparameter of kfts/algorithms/lstm_ad/params.py with its default, a previous model to continue from,
the random seed, the deploy step's settings, and the images the tasks run (image, gpu_image:
pipelines.common.for_run)."""

from kfp import dsl

from kfts.algorithms.lstm_ad import LstmADAlgorithm
from kfts.kubeflow.pipelines.common import (
    Cluster,
    Serving,
    after_training,
    for_run,
    images,
    train_step,
    validate_inputs,
)

ALGORITHM = LstmADAlgorithm.id


def build(cluster: Cluster | None = None):
    """The pipeline function. cluster=None: for kfp.local (no requests, GPUs, retries or volumes).

    Deployment is gated on the validation reconstruction error (valid data carries no labels): the model is
    deployed when its mean squared error is at most deploy_max_mse.
    """
    checkpoint_root = cluster.checkpoint_root if cluster else ""
    image_default, gpu_image_default = images(cluster)
    gpu = cluster is not None and cluster.gpus > 0  # the deploy step then serves on the GPU node pool too

    @dsl.pipeline(
        name=ALGORITHM,
        description="LSTM-AD time-series anomaly detection: validate, train, evaluate, batch-predict, deploy",
    )
    def lstm_ad(
        train_uri: str,
        valid_uri: str = "",
        test_uri: str = "",
        test_labels_uri: str = "",
        num_layers: int = 2,
        sequence_length: int = 50,
        hidden_size: int = 128,
        dropout: float = 0.1,
        lr: float = 0.001,
        batch_size: int = 64,
        epochs: int = 100,
        error_fraction: float = 0.2,
        threshold_quantile: float = 0.01,
        precision: str = "auto",
        scoring: str = "seed",
        prediction_length: int = 40,
        seed: int = 0,
        init_model_uri: str = "",
        checkpoint_root: str = checkpoint_root,
        flag: bool = False,
        deploy: bool = False,
        deploy_max_mse: float = 1e30,
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
            "num_layers": num_layers,
            "sequence_length": sequence_length,
            "hidden_size": hidden_size,
            "dropout": dropout,
            "lr": lr,
            "batch_size": batch_size,
            "epochs": epochs,
            "error_fraction": error_fraction,
            "threshold_quantile": threshold_quantile,
            "precision": precision,
            "scoring": scoring,
            "prediction_length": prediction_length,
        }
        model = train_step(
            placed,
            "train",
            checked,
            init_model_uri,
            algorithm=ALGORITHM,
            train_data=data["train"],
            valid_data=data["valid"],
            hyperparameters=hyperparameters,
            seed=seed,
            checkpoint_root=checkpoint_root,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).outputs["model"]

        after_training(
            model=model,
            data=data,
            valid=valid_uri,
            test=test_uri,
            test_labels=test_labels_uri,
            valid_metric="mse",
            test_metric="roc_auc",
            passes_gate=lambda score: score <= deploy_max_mse,
            deploy_wanted=deploy,
            serving=Serving(
                deploy_name, deploy_namespace, deploy_image, deploy_gpu, deploy_min_replicas, deploy_max_replicas
            ),
            predict_options={"flag": flag},
            cluster=placed,
        )

    return lstm_ad
