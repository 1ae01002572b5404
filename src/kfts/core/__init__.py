"""Core mechanisms below every algorithm: CSV, artifacts, storage, the training loop, distribution, metrics and reports.
Nothing here imports an algorithm."""
