"""Model plumbing: fetch a previous model, fan InceptionTime members out and combine them, promote a champion."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfts.kubeflow.components.settings import IMAGE, fail, mark_absent, present


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, mark_absent])
def fetch_model(uri: str, model: Output[Model]):
    """Copy the kfts model directory at `uri` (a path or a URI, kfts.core.storage; a champion's prefix: its current
    version) into `model`, checking that it loads. An empty `uri` gives a placeholder (present=False): no
    previous model."""
    from kfts.core import artifact, storage
    from kfts.core.errors import InputError
    from kfts.jobs.load import load_model

    if not uri:
        mark_absent(model)
        return
    try:
        storage.copy(uri, model.path)
        manifest = artifact.read_manifest(model.path)
        load_model(model.path, device="cpu")  # a complete model that loads
    except InputError as e:
        if e.path and e.path.startswith(model.path):  # the copy's fault: the champion's
            e.path = uri + e.path[len(model.path) :]
        fail(e)
    model.metadata.update({"present": True, "source": uri, "algorithm": manifest.get("algorithm")})


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def member_indices(models: int) -> list[int]:
    """0 .. models-1: the items of the ensemble fan-out."""
    return list(range(models))


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, present])
def combine_members(
    members: Input[list[Model]],
    train_data: Input[Dataset],
    valid_data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    device: str = "auto",
):
    """One InceptionTime ensemble artifact from the members trained as parallel tasks
    (kfts.algorithms.inception_time.ensemble), in member order, scored on the training (and validation) data as
    a single-task fit scores itself."""
    from kfts.algorithms.inception_time import InceptionTimeAlgorithm
    from kfts.algorithms.inception_time.ensemble import combine_members as combine
    from kfts.core.errors import InputError
    from kfts.core.training import metric_line, use_cpu_share
    from kfts.jobs.load import load_model

    use_cpu_share()
    ordered = sorted(members, key=lambda m: m.metadata.get("member", 0))
    read = InceptionTimeAlgorithm().read_training
    try:
        loaded = {m.path: load_model(m.path, device=device) for m in ordered}
        combined = combine(
            loaded,
            device=device,
            train=read(train_data.path),
            valid=read(valid_data.path) if present(valid_data) else None,
        )
        combined.save(model.path)
    except InputError as e:
        fail(e)
    model.metadata.update({"algorithm": combined.algorithm, "framework": "pytorch", "members": len(ordered)})
    for name, value in combined.metrics.items():
        metrics.log_metric(name, float(value))
    print(metric_line(combined.metrics))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def choose_champion(
    challenger_score: float, champion_score: float, higher_is_better: bool, metric: str, scores: Output[Metrics]
) -> bool:
    """Whether to promote the challenger: only when it is strictly better on the same held-out data. Both
    scores are recorded."""
    better = challenger_score > champion_score if higher_is_better else challenger_score < champion_score
    scores.log_metric(f"challenger_{metric}", challenger_score)
    scores.log_metric(f"champion_{metric}", champion_score)
    scores.log_metric("promoted", float(better))
    print(
        f"challenger {metric}={challenger_score:.6f}, champion {metric}={champion_score:.6f}: "
        f"{'promote the challenger' if better else 'keep the champion'}"
    )
    return better


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail])
def promote_model(model: Input[Model], uri: str):
    """Make `model` the champion at `uri`, where the retraining pipeline reads the champion from
    (kfts.jobs.promote: an object-store prefix gets the new version beside the old one, then a pointer to it;
    a local directory is replaced in one rename)."""
    from kfts.core.errors import InputError
    from kfts.jobs.promote import promote

    try:
        promoted = promote(model.path, uri)
    except InputError as e:
        fail(e)
    print(f"promoted {model.uri} to {uri}: {promoted}")
