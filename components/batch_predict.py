"""batch-predict: the SPEC batch prediction output of a model on a file (what `kfts predict` writes)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from kfts.components.settings import IMAGE, fail


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail])
def batch_predict(model: Input[Model], data: Input[Dataset], predictions: Output[Dataset],
                  probabilities: bool = False, flag: bool = False, device: str = "auto"):
    """probabilities (inception-time): add the averaged class probabilities; flag (lstm-ad): add the 0/1
    anomaly column from the model's calibrated threshold."""
    from kfts.algorithms import load_model
    from kfts.artifact import atomic_file
    from kfts.errors import InputError

    try:
        estimator = load_model(model.path, device=device)
        values = estimator.read_inference(data.path)
        options = ({"probabilities": probabilities} if estimator.algorithm == "inception-time"
                   else {"flag": flag})
        text = estimator.predictions_csv(values, **options)
    except InputError as e:
        if e.path == data.path:
            e.path = data.metadata.get("source", e.path)
        fail(e)
    with atomic_file(predictions.path) as f:
        f.write(text)
    predictions.metadata.update({"rows": len(values), "algorithm": estimator.algorithm, **options})
    print(f"{len(values)} rows predicted into {predictions.path}")
