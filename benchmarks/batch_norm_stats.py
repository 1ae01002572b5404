"""InceptionTime's BatchNorm statistics (issue 29): the running averages training keeps against the precise
statistics recomputed for the final weights, on every UCR set in ../shared/data, 3 seeds each, at the seed
defaults; and what the statistics pass costs beside an epoch of training.

Each set and seed is trained once, with `batch_norm_stats="running"`; its test accuracy is scored with those
running averages, then again after the precise statistics are recomputed over the training series
(kfts.algorithms.inception_time.batch_norm.recompute, what a default fit ends with): the same weights, scored
both ways. Nothing here is tuned to these sets. The fits run one per core, each on one thread (a fit's
OpenMP threads slow several times over when anything else runs beside them; one thread each does not), so
the cost column compares a one-thread pass with a one-thread epoch.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from kfts.algorithms.inception_time import batch_norm
from kfts.algorithms.inception_time.estimator import InceptionTime, Params
from kfts.core.csvio import read_labeled_series

from classification import UCR, _row, _settings, reference

SEEDS = (0, 1, 2)
QUICK_SET = "ItalyPowerDemand"  # the smallest series: --quick checks the section runs, on this set alone


def section(quick: bool) -> str:
    params = Params(batch_norm_stats="running", **({"epochs": 2, "models": 2} if quick else {}))
    names = [QUICK_SET] if quick else sorted(reference())
    lines = [
        "## InceptionTime: running BatchNorm averages against precise statistics",
        "",
        f"Seed defaults ({_settings(params)}), seeds {', '.join(map(str, SEEDS))}, CPU, one thread per fit, "
        "one fit per core. Each fit is scored "
        "on the test series twice: with the running averages training kept, and after recomputing the "
        "statistics for the same weights over the training series (what a default fit now does, "
        "`--batch-norm-stats precise`). Accuracy: mean ± standard deviation over the seeds; the difference "
        "in test series is the mean of precise minus running, in series of the test set. The statistics "
        "pass is timed beside an epoch (the fit's wall time over its epochs): recomputing the statistics "
        "before every epoch's validation would add that fraction to training, so the per-epoch "
        "validation figures keep the running averages and the log says so.",
        "",
        "| data | train x length | test series | train accuracy, running | train accuracy, precise "
        "| test accuracy, running | test accuracy, precise | difference (test series) "
        "| statistics pass / epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    differences, costs = {}, []
    with ProcessPoolExecutor(
        len(os.sched_getaffinity(0)), mp_context=get_context("spawn"), initializer=_one_thread
    ) as pool:
        fits = {name: [pool.submit(_scored_both_ways, name, params, seed) for seed in SEEDS] for name in names}
    for name in names:
        runs = [fit.result() for fit in fits[name]]
        test_series = runs[0]["test_series"]
        differences[name] = statistics.mean(r["precise"] - r["running"] for r in runs) * test_series
        set_costs = [r["pass_seconds"] / r["epoch_seconds"] for r in runs]
        costs += set_costs
        lines.append(
            _row(
                f"| {name} | {runs[0]['shape']} | {test_series} | {_spread(runs, 'train_running')} "
                f"| {_spread(runs, 'train_precise')} | {_spread(runs, 'running')} | {_spread(runs, 'precise')} "
                f"| {differences[name]:+.1f} | {statistics.mean(set_costs):.2f} |"
            )
        )
    worst = min(differences, key=differences.get)
    lines += [
        "",
        f"Worst set for precise statistics: {worst}, {differences[worst]:+.1f} test series on the 3-seed "
        f"mean. The statistics pass costs {statistics.mean(costs):.2f} epochs of training on average "
        f"(range {min(costs):.2f}-{max(costs):.2f}), once per fit.",
        "",
    ]
    return "\n".join(lines)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _scored_both_ways(name: str, params: Params, seed: int) -> dict:
    train = read_labeled_series(UCR / name / f"{name}_train.csv")
    test = read_labeled_series(UCR / name / f"{name}_test.csv", min_classes=1)
    start = time.perf_counter()
    model = InceptionTime(params, device="cpu", seed=seed).fit(train)
    fit_seconds = time.perf_counter() - start

    def accuracy(data) -> float:
        return float((model.predict(data.values) == data.labels).mean())

    scores = {"running": accuracy(test), "train_running": accuracy(train)}
    start = time.perf_counter()
    batch_norm.recompute(model.network, model._tensor(train.values), model.device_)
    scores.update(
        pass_seconds=time.perf_counter() - start,
        epoch_seconds=fit_seconds / params.epochs,
        precise=accuracy(test),
        train_precise=accuracy(train),
        test_series=len(test.labels),
        shape=f"{len(train.labels)} x {train.values.shape[1]}",
    )
    return scores


def _spread(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs]
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
