"""The container images kfts runs in, built from images/ by `make images` (CPU) and `make images-cuda`.

One name, four tags: KFTS_IMAGE (default ghcr.io/kfts/kfts:0.1.0) is the component image that every KFP
component, Katib trial and TrainJob runs; `-cuda` is the same with PyTorch's CUDA build, for GPU node pools;
`-predictor` and `-predictor-cuda` start `kfts serve`. Work placed on a GPU runs a `-cuda` image, and only
that work is placed on GPU nodes.
"""

from __future__ import annotations

import os

DEFAULT_IMAGE = "ghcr.io/kfts/kfts:0.1.0"


def base_image() -> str:
    return os.environ.get("KFTS_IMAGE") or DEFAULT_IMAGE


def component_image(gpu: bool = False, base: str | None = None) -> str:
    return (base or base_image()) + ("-cuda" if gpu else "")


def predictor_image(gpu: bool = False, base: str | None = None) -> str:
    return (base or base_image()) + ("-predictor-cuda" if gpu else "-predictor")
