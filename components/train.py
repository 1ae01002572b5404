"""train: fit one algorithm on validated data and write the SPEC model artifact (what `kfts train` does)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.settings import IMAGE, fail, present


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, present])
def train(algorithm: str, train_data: Input[Dataset], valid_data: Input[Dataset], init_model: Input[Model],
          hyperparameters: dict, seed: int, checkpoint_root: str, run_id: str, model: Output[Model],
          metrics: Output[Metrics], member: int = 0, device: str = "auto"):
    """Train `algorithm` with `hyperparameters` (the Params field names; missing ones keep their defaults).

    member: the ensemble member this task trains when InceptionTime members fan out over tasks; its seed is
    `seed + member`. checkpoint_root: where training state is kept after every epoch, in
    <checkpoint_root>/<run_id>/member-<member>, so that a retried task (a preempted node) resumes from its last
    finished epoch; it is a mounted volume on a cluster, a local folder in local runs, or empty for none.
    """
    import os
    import shutil
    from dataclasses import fields

    from kfts.algorithms import get, load_model
    from kfts.errors import InputError

    try:
        cls = get(algorithm)
        # pipeline parameters reach a component as text ("4", or "4.0" under kfp.local): read them as the
        # dataclass field's type, as the CLI's flags are
        kinds = {"int": lambda v: int(float(v)), "float": float, "str": str}
        known = {f.name: f for f in fields(cls.Params)}
        unknown = sorted(set(hyperparameters) - known.keys())
        if unknown:
            raise InputError(f"unknown {algorithm} hyperparameter {unknown[0]!r} (known: {', '.join(known)})")
        params = cls.Params(**{k: kinds[known[k].type](v) for k, v in hyperparameters.items()})
        estimator = cls(params, device=device, seed=seed + member)
        init = load_model(init_model.path, device=device) if present(init_model) else None
        if init is not None and init.algorithm != algorithm:
            raise InputError(f"holds a {init.algorithm} model, not {algorithm}", path=init_model.uri)
        train_set = cls.read_training(train_data.path)
        valid_set = cls.read_training(valid_data.path) if present(valid_data) else None
        checkpoint_dir = os.path.join(checkpoint_root, run_id, f"member-{member}") if checkpoint_root else None
        estimator.fit(train_set, valid_set, init_model=init, checkpoint_dir=checkpoint_dir)
        estimator.save(model.path)
    except InputError as e:
        fail(e)
    if checkpoint_dir:  # the model is written: the training state is of no further use
        shutil.rmtree(checkpoint_dir, ignore_errors=True)

    model.metadata.update({"algorithm": algorithm, "framework": "pytorch", "member": member,
                           "hyperparameters": {k: getattr(params, k) for k in known}})
    for name, value in estimator.metrics.items():
        metrics.log_metric(name, float(value))
