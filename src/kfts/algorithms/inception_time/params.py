"""InceptionTime hyperparameters: the fields the CLI, the pipelines and Katib read (names, types, defaults,
help, choices). No torch here: the command line is built from them."""

from __future__ import annotations

from dataclasses import dataclass, field

from kfts.core.hyperparameters import check_params


@dataclass
class InceptionTimeParams:
    """InceptionTime hyperparameters. Names and defaults of the first six are the reference product's (the managed
    InceptionTime algorithm kfts reimplements: docs/FORMATS.md "Seed and paper scoring")."""

    filters: int = field(default=32, metadata={"help": "filters of each convolution"})
    depth: int = field(default=6, metadata={"help": "Inception modules per network"})
    models: int = field(default=5, metadata={"help": "networks in the ensemble"})
    lr: float = field(default=0.001, metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=64, metadata={"help": "series per training batch"})
    epochs: int = field(default=100, metadata={"help": "training epochs"})
    schedule: str = field(
        default="constant",
        metadata={
            "help": "constant: the reference product's fixed learning rate; plateau: the paper's "
            "ReduceLROnPlateau on the training loss (factor 0.5, patience 50, min 1e-4), keeping the best-loss weights",
            "choices": ("constant", "plateau"),
        },
    )
    ensemble: str = field(
        default="auto",
        metadata={
            "help": "train members one after another (sequential), together as one grouped network (stacked), "
            "or whichever a short timing on this data and device says is faster (auto)",
            "choices": ("auto", "sequential", "stacked"),
        },
    )
    early_stopping: int = field(
        default=0,
        metadata={
            "help": "stop training when the validation loss has not improved for this many epochs and keep the "
            "weights of its best epoch (stacked members stop together, on their mean loss); needs "
            "validation data. 0: off, every epoch is trained",
            "bounds": (0, 1_000_000),
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "training precision: bf16/fp16 autocast (fp16 with loss scaling), fp32, or auto (bf16 where "
            "the CPU or GPU runs it natively, fp16 on older GPUs, else fp32)",
            "choices": ("auto", "fp32", "bf16", "fp16"),
        },
    )
    batch_norm_stats: str = field(
        default="precise",
        metadata={
            "help": "the BatchNorm statistics the saved model predicts with: precise: recomputed for its final weights "
            "over the training series; running: the running averages kept during training (the seed's)",
            "choices": ("precise", "running"),
        },
    )

    def __post_init__(self):
        check_params(self)
