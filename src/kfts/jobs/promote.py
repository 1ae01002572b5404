"""Promotion of a model to champion (kfts.core.storage.promote), checked first: the model loads."""

from __future__ import annotations

from kfts.core import storage
from kfts.jobs.load import load_model


def promote(model: str, destination: str) -> str:
    """Make the model directory `model` the champion at `destination` (a path or object-store prefix) if it
    loads; returns where the new model is."""
    return storage.promote(model, destination, verify=lambda source: load_model(source, device="cpu"))
