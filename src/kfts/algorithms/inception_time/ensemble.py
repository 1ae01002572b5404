"""Combining InceptionTime models trained apart (one KFP task per member) into one ensemble artifact.

An ensemble's prediction is the average of its members' softmax probabilities, and an InceptionNetworks state
dict is member-major, so k artifacts of one member each (or of several) are combined by concatenating their
members: the result predicts exactly what averaging the k models' probabilities predicts. The members must
have been trained on the same data (same classes, series length and scaling) with the same network shape.
"""

from __future__ import annotations

import dataclasses

from kfts.algorithms.inception_time.estimator import InceptionTime
from kfts.algorithms.inception_time.network import merge_members, split_members
from kfts.core.csvio import LabeledSeries
from kfts.core.errors import InputError


def combine_members(
    members: dict[str, InceptionTime],
    *,
    train: LabeledSeries | None = None,
    valid: LabeledSeries | None = None,
    device: str = "auto",
) -> InceptionTime:
    """One InceptionTime ensemble holding every member of the loaded models in `members` (where each was loaded
    from -> the model), in order.

    With `train` (and `valid`) the combined model's metrics are scored on them, as fit() scores a whole
    ensemble; without, the combined model carries no metrics.
    """
    if not members:
        raise InputError("no models to combine")
    models, sources = list(members.values()), list(members)
    first = models[0]
    for path, m in members.items():
        if m.algorithm != InceptionTime.algorithm:
            raise InputError(f"holds a {m.algorithm} model; only inception-time members can be combined", path=path)
        mismatch = [
            what
            for what, same in (
                ("classes", list(m.classes) == list(first.classes)),
                ("series length", m.length == first.length),
                ("scaling", m.scaler == first.scaler),
                ("filters", m.params.filters == first.params.filters),
                ("depth", m.params.depth == first.params.depth),
                ("batch-norm statistics", m.params.batch_norm_stats == first.params.batch_norm_stats),
            )
            if not same
        ]
        if mismatch:
            raise InputError(
                f"differs from {sources[0]} in {', '.join(mismatch)}: members of one ensemble "
                "must be trained on the same data with the same network shape",
                path=path,
            )

    states = []
    for m in models:
        assert m.network is not None  # a loaded model
        states += split_members(m.network.state_dict(), m.params.models)
    combined = InceptionTime(dataclasses.replace(first.params, models=len(states)), device=device, seed=None)
    combined.device_, combined.history, combined.metrics = first.device_, [], {}
    combined.warnings = [w for m in models for w in m.warnings]  # a member whose fit failed is in the ensemble
    combined.classes, combined.length, combined.scaler = first.classes, first.length, dict(first.scaler)
    combined.network = combined._new_group(len(states))
    combined.network.load_state_dict(merge_members(states))
    combined.network.eval()
    # each part's epochs, numbered by the member they belong to (as a sequential fit logs them)
    offset = 0
    for m in models:
        for row in m.history:
            member = row.get("member", 1)
            combined.history.append({**row, "member": offset + member})
        offset += m.params.models
    for prefix, data in (("train", train), ("valid", valid)):
        if data is not None:
            # the figures fit() reports: the members' mean cross-entropy and the ensemble's accuracy
            combined.metrics.update(
                combined._ensemble_score(
                    combined._tensor(data.values), combined.encode_labels(data.labels, path_hint=prefix), prefix
                )
            )
    return combined
