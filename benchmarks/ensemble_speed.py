"""How fast an InceptionTime ensemble trains, side by side on the same data in one run:

(a) the straightforward way: a plain PyTorch port (Conv1d with padding="same", fp32), members one after another;
(b) kfts: 1 x k channels-last convolutions, members one after another, or stacked into one grouped network;
(c) kfts with bf16 autocast (fast only where the CPU has native bf16: AVX512-BF16 or AMX).

Each variant trains 5 members for the same number of epochs; the table gives time per epoch per network,
the speed-up over (a), test accuracy (to show it holds), and the achieved fraction of this machine's fp32
matrix-multiply rate (training counted as 3x the forward convolutions' FLOPs).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from classification import UCR, DATA, _join_labels
from kfts.csvio import read_labeled_series
from kfts.algorithms.inception_time.estimator import InceptionTime, Params
from kfts.algorithms.inception_time.network import InceptionNetworks
from kfts.training import cpu_supports_bf16

MEMBERS = 5


class PlainInception(nn.Module):
    """One InceptionTime network written the obvious way (the baseline a user would port from Keras)."""

    def __init__(self, n_classes: int, filters: int = 32, depth: int = 6):
        super().__init__()
        width = 4 * filters

        def module(c_in):
            return nn.ModuleDict({
                "bottleneck": nn.Conv1d(c_in, 32, 1, bias=False) if c_in > 1 else nn.Identity(),
                "convs": nn.ModuleList(nn.Conv1d(32 if c_in > 1 else c_in, filters, k, padding="same", bias=False)
                                       for k in (10, 20, 40)),
                "pool": nn.Sequential(nn.MaxPool1d(3, 1, 1), nn.Conv1d(c_in, filters, 1, bias=False)),
                "norm": nn.BatchNorm1d(width)})

        self.blocks = nn.ModuleList(module(1 if d == 0 else width) for d in range(depth))
        self.shortcuts = nn.ModuleDict({str(d): nn.Sequential(nn.Conv1d(1 if d == 2 else width, width, 1, bias=False),
                                                              nn.BatchNorm1d(width)) for d in range(2, depth, 3)})
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        residual = x
        for d, m in enumerate(self.blocks):
            z = m["bottleneck"](x)
            x = F.relu(m["norm"](torch.cat([c(z) for c in m["convs"]] + [m["pool"](x)], dim=1)))
            if str(d) in self.shortcuts:
                x = residual = F.relu(x + self.shortcuts[str(d)](residual))
        return self.head(x.mean(dim=2))


def plain_fit(train, test, epochs: int, batch_size: int = 64, seed: int = 0):
    """(a): members one after another, fp32, plain Adam loop. -> (accuracy, seconds)."""
    torch.manual_seed(seed)
    classes = sorted(set(train.labels))
    mean, std = float(train.values.mean()), float(train.values.std())
    x = torch.from_numpy((train.values - mean) / std).unsqueeze(1)
    y = torch.tensor([classes.index(c) for c in train.labels])
    xt = torch.from_numpy((test.values - mean) / std).unsqueeze(1)
    start = time.perf_counter()
    probabilities = 0
    for _ in range(MEMBERS):
        net = PlainInception(len(classes))
        opt = torch.optim.Adam(net.parameters(), lr=0.001)
        for _ in range(epochs):
            net.train()
            for idx in torch.randperm(len(x)).split(batch_size):
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            probabilities = probabilities + torch.softmax(net.eval()(xt), dim=1)
    seconds = time.perf_counter() - start
    predicted = np.array(classes)[probabilities.argmax(1).numpy()]
    return float((predicted == test.labels).mean()), seconds


def kfts_fit(train, test, epochs: int, ensemble: str, precision: str, seed: int = 0):
    params = Params(models=MEMBERS, epochs=epochs, ensemble=ensemble, precision=precision)
    start = time.perf_counter()
    model = InceptionTime(params, device="cpu", seed=seed).fit(train)
    seconds = time.perf_counter() - start
    return float((model.predict(test.values) == test.labels).mean()), seconds


def training_flops_per_series(length: int, n_classes: int) -> float:
    """3 x forward FLOPs of one network: every convolution keeps the series length."""
    net = InceptionNetworks(1, n_classes, members=1)
    conv_weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d))
    return 3 * 2 * conv_weights * length


def matmul_flops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 2048**3 / (time.perf_counter() - start)


def section(quick: bool) -> str:
    seed_dir = DATA / "seed-samples" / "inception_time"
    # KFTS_SPEED_EPOCHS="SEED,GUNPOINT": smaller budgets where the defaults (10, 100) do not fit; the table says
    seed_epochs, gunpoint_epochs = (2, 2) if quick else map(int, os.environ.get("KFTS_SPEED_EPOCHS", "10,100")
                                                            .split(","))
    datasets = [("seed sample (700 x 100)", seed_dir / "train.csv", _join_labels(seed_dir), seed_epochs),
                ("GunPoint (50 x 150)", UCR / "GunPoint" / "GunPoint_train.csv",
                 UCR / "GunPoint" / "GunPoint_test.csv", gunpoint_epochs)]
    peak = matmul_flops()
    native_bf16 = cpu_supports_bf16()
    lines = ["## Ensemble training speed", "",
             f"5 networks (filters 32, depth 6), batch 64, CPU with {torch.get_num_threads()} threads; this CPU "
             f"{'has' if native_bf16 else 'has no'} native bf16 (so `--precision auto` picks "
             f"{'bf16' if native_bf16 else 'fp32'}). fp32 matmul (2048x2048) measured at {peak / 1e9:.0f} GFLOP/s.",
             "", "| data | variant | epochs | s per epoch per network | speed-up vs (a) | test accuracy "
             "| % of fp32 matmul rate |", "|---|---|---|---|---|---|---|"]
    for name, train_path, test_path, epochs in datasets:
        train, test = read_labeled_series(train_path), read_labeled_series(test_path, min_classes=1)
        flops = training_flops_per_series(train.values.shape[1], len(set(train.labels))) * len(train.values)
        runs = [("(a) plain Conv1d, fp32, one after another", lambda: plain_fit(train, test, epochs)),
                ("(b) kfts, fp32, one after another", lambda: kfts_fit(train, test, epochs, "sequential", "fp32")),
                ("(b) kfts, fp32, stacked (grouped)", lambda: kfts_fit(train, test, epochs, "stacked", "fp32")),
                ("(c) kfts, bf16 autocast, stacked", lambda: kfts_fit(train, test, epochs, "stacked", "bf16")),
                ("kfts defaults (ensemble auto, precision auto)", lambda: kfts_fit(train, test, epochs, "auto", "auto"))]
        baseline = None
        for variant, run in runs:
            accuracy, seconds = run()
            per_net_epoch = seconds / epochs / MEMBERS
            baseline = baseline or per_net_epoch
            rate = flops * epochs * MEMBERS / seconds
            lines.append(f"| {name} | {variant} | {epochs} | {per_net_epoch:.3f} | {baseline / per_net_epoch:.2f}x "
                         f"| {accuracy:.3f} | {100 * rate / peak:.0f}% |")
    return "\n".join(lines) + "\n"
