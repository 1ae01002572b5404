"""batch-predict: the batch prediction output of a model on a file (what `kfts predict` writes, streamed)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from kfts.kubeflow.components.settings import IMAGE, fail


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail])
def batch_predict(
    model: Input[Model], data: Input[Dataset], predictions: Output[Dataset], options: dict = {}, device: str = "auto"
):
    """options: the algorithm's predict options by name (inception-time {"probabilities": true}: add the
    averaged class probabilities; lstm-ad {"flag": true}: add the 0/1 anomaly column)."""
    from kfts.algorithms import of
    from kfts.algorithms.adapter import boolean
    from kfts.core.errors import InputError
    from kfts.core.training import use_cpu_share
    from kfts.jobs.load import load_model
    from kfts.jobs.predict import write_predictions

    use_cpu_share()
    try:
        estimator = load_model(model.path, device=device)
        known = of(estimator).predict_options
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InputError(
                f"no predict option {unknown[0]!r} for {estimator.algorithm} (its options: "
                f"{', '.join(known) or 'none'})"
            )
        # pipeline parameters inside a dict may arrive as text ("False" under kfp.local)
        options = {name: boolean(value) for name, value in options.items()}
        rows = write_predictions(estimator, data.path, predictions.path, **options)
    except InputError as e:
        if e.path == data.path:
            e.path = data.metadata.get("source", e.path)
        fail(e)
    predictions.metadata.update({"rows": rows, "algorithm": estimator.algorithm, **options})
    print(f"{rows} rows predicted into {predictions.path}")
