"""train: fit one algorithm on validated data and write the model artifact (docs/ARTIFACT.md), as `kfts train` does."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfts.kubeflow.components.settings import IMAGE, fail, present


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, present])
def train(
    algorithm: str,
    train_data: Input[Dataset],
    valid_data: Input[Dataset],
    init_model: Input[Model],
    hyperparameters: dict,
    seed: int,
    checkpoint_root: str,
    run_id: str,
    model: Output[Model],
    metrics: Output[Metrics],
    member: int = 0,
    device: str = "auto",
):
    """Train `algorithm` with `hyperparameters` (the Params field names; missing ones keep their defaults).

    member: the ensemble member this task trains when InceptionTime members fan out over tasks; its seed is
    `seed + member`. checkpoint_root: where training state is kept after every epoch, in
    <checkpoint_root>/<run_id>/member-<member>, so that a retried task (a preempted node) resumes from its last
    finished epoch; it is a mounted volume on a cluster, a local folder in local runs, or empty for none.
    """
    import os
    import shutil

    from kfts.core.errors import InputError
    from kfts.core.training import use_cpu_share
    from kfts.jobs.train import make_params
    from kfts.jobs.train import train as train_model

    use_cpu_share()
    checkpoint_dir = os.path.join(checkpoint_root, run_id, f"member-{member}") if checkpoint_root else None
    try:
        params = make_params(algorithm, hyperparameters)
        estimator = train_model(
            algorithm,
            train_data.path,
            model.path,
            valid_path=valid_data.path if present(valid_data) else None,
            params=params,
            init_model=init_model.path if present(init_model) else None,
            checkpoint_dir=checkpoint_dir,
            seed=seed + member,
            device=device,
        )
    except InputError as e:
        fail(e)
    if checkpoint_dir:  # the model is written: the training state is of no further use
        shutil.rmtree(checkpoint_dir, ignore_errors=True)

    model.metadata.update(
        {"algorithm": algorithm, "framework": "pytorch", "member": member, "hyperparameters": vars(params)}
    )
    for name, value in estimator.metrics.items():
        metrics.log_metric(name, float(value))
    # an estimator that checks its fit (InceptionTime) says whether, and why, it failed
    warnings = getattr(estimator, "warnings", None)
    if warnings is not None:
        metrics.log_metric("fit_failed", float(bool(warnings)))
        model.metadata["warnings"] = warnings
