"""What lets processes and fan-out pipeline tasks share an InceptionTime ensemble's members out: member m
trained alone is member m of the ensemble one process trains (torchrun itself:
tests/integration/core/test_distributed.py)."""

from __future__ import annotations

import dataclasses

import torch

from kfts.algorithms.inception_time.ensemble import combine_members
from kfts.algorithms.inception_time.estimator import InceptionTime, Params
from kfts.core.csvio import LabeledSeries
from kfts.jobs.load import load_model

from helpers import make_classification


def test_members_trained_alone_make_the_ensemble_one_process_trains(tmp_path):
    """What lets processes (and fan-out pipeline tasks) share members out: member m of a sequential ensemble
    is the one-member model trained with seed + m."""
    labels, values = make_classification(n_per_class=6, length=16)
    data = LabeledSeries(labels=labels, values=values)
    params = Params(filters=4, depth=2, models=3, epochs=2, batch_size=8, ensemble="sequential")
    whole = InceptionTime(params, device="cpu", seed=5).fit(data)
    for m in range(3):
        InceptionTime(dataclasses.replace(params, models=1), device="cpu", seed=5 + m).fit(data).save(
            tmp_path / f"member-{m}"
        )
    combined = combine_members(loaded([tmp_path / f"member-{m}" for m in range(3)]), device="cpu")
    for key, value in whole.network.state_dict().items():
        assert torch.equal(value, combined.network.state_dict()[key]), key


def loaded(model_dirs) -> dict:
    return {str(d): load_model(d, device="cpu") for d in model_dirs}
