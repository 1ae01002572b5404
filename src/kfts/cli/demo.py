"""`make demo`: kfts end to end on built-in sample data, in a few minutes on 2 CPU cores.

Both algorithms through the command line (validate, train, evaluate, predict), then both Kubeflow pipelines
run locally with kfp.local. Every step is the `kfts` command a user would type (shown before it runs);
outputs land in ./demo-output.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from kfts import cli
from kfts.cli import sample_data

OUT = Path("demo-output")


def kfts(*args) -> None:
    words = [str(a) for a in args]
    print(f"\n$ kfts {shlex.join(words)}", flush=True)
    code = cli.main(words)
    if code:
        sys.exit(code)


def classification_data(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, seed in (("train", 0), ("valid", 1), ("test", 2)):
        labels, values = sample_data.classification(
            n_per_class=40, length=64, classes=("walk", "run", "jump"), seed=seed
        )
        files[name] = folder / f"{name}.csv"
        sample_data.write_csv(files[name], ([label, *row] for label, row in zip(labels, values)))
        if name == "test":
            files["test_data"] = folder / "test_data.csv"
            sample_data.write_csv(files["test_data"], values)
            files["test_labels"] = folder / "test_labels.csv"
            sample_data.write_csv(files["test_labels"], labels[:, None])
    return files


def inception_time() -> None:
    print("== InceptionTime: time-series classification ==")
    data = classification_data(OUT / "inception-time" / "data")
    model, out = OUT / "inception-time" / "model", OUT / "inception-time"
    kfts("validate", "inception-time", data["train"])
    kfts("validate", "inception-time", data["test_data"], "--inference")
    kfts(
        "train",
        "inception-time",
        "--train",
        data["train"],
        "--valid",
        data["valid"],
        "--model-dir",
        model,
        "--models",
        3,
        "--ensemble",
        "stacked",
        "--epochs",
        15,
        "--seed",
        0,
    )  # one metric line per epoch
    kfts("evaluate", "--model-dir", model, "--input", data["test"], "--output-dir", out / "evaluation")
    kfts(
        "predict",
        "--model-dir",
        model,
        "--input",
        data["test_data"],
        "--output",
        out / "predictions.csv",
        "--probabilities",
    )
    print("first predictions:\n" + "".join((out / "predictions.csv").read_text().splitlines(True)[:4]))
    print(f"report: {out / 'evaluation' / 'report.html'}")


def lstm_ad() -> None:
    print("\n== LSTM-AD: time-series anomaly detection ==")
    folder, model = OUT / "lstm-ad" / "data", OUT / "lstm-ad" / "model"
    folder.mkdir(parents=True, exist_ok=True)
    sample_data.write_csv(folder / "train.csv", sample_data.waves(4000, seed=0))
    sample_data.write_csv(folder / "valid.csv", sample_data.waves(1000, seed=1))
    test, labels = sample_data.with_anomalies(sample_data.waves(1500, seed=2), starts=(520, 1130))
    sample_data.write_csv(folder / "test_data.csv", test)
    sample_data.write_csv(folder / "test_labels.csv", labels[:, None])
    kfts("validate", "lstm-ad", folder / "train.csv")
    kfts(
        "train",
        "lstm-ad",
        "--train",
        folder / "train.csv",
        "--valid",
        folder / "valid.csv",
        "--model-dir",
        model,
        "--epochs",
        20,
        "--hidden-size",
        32,
        "--sequence-length",
        20,
        "--seed",
        0,
    )
    kfts(
        "evaluate",
        "--model-dir",
        model,
        "--input",
        folder / "test_data.csv",
        "--labels",
        folder / "test_labels.csv",
        "--output-dir",
        OUT / "lstm-ad" / "evaluation",
    )
    predictions = OUT / "lstm-ad" / "predictions.csv"
    kfts("predict", "--model-dir", model, "--input", folder / "test_data.csv", "--output", predictions, "--flag")
    rows = predictions.read_text().splitlines()
    flagged = [i + 1 for i, row in enumerate(rows) if row.endswith(",1")]
    print(
        f"{len(rows)} rows scored; anomalies injected at rows 521-530 and 1131-1140; flagged rows: {_ranges(flagged)}"
    )


def _ranges(rows: list[int]) -> str:
    spans, start = [], None
    for i, row in enumerate(rows):
        start = row if start is None else start
        if i + 1 == len(rows) or rows[i + 1] != row + 1:
            spans.append(f"{start}-{row}" if row > start else str(row))
            start = None
    return ", ".join(spans) or "none"


def pipelines() -> None:
    """The same jobs as Kubeflow pipelines, run on this machine by kfp.local (each step a subprocess)."""
    print("\n== The Kubeflow pipelines, run locally with kfp.local ==")
    it, ad = OUT / "inception-time" / "data", OUT / "lstm-ad" / "data"
    kfts(
        "pipeline",
        "run",
        "inception-time",
        "--train",
        it / "train.csv",
        "--valid",
        it / "valid.csv",
        "--test",
        it / "test_data.csv",
        "--test-labels",
        it / "test_labels.csv",
        "--models",
        2,
        "--epochs",
        5,
        "--output-dir",
        OUT / "pipelines",
    )
    kfts(
        "pipeline",
        "run",
        "lstm-ad",
        "--train",
        ad / "train.csv",
        "--valid",
        ad / "valid.csv",
        "--test",
        ad / "test_data.csv",
        "--test-labels",
        ad / "test_labels.csv",
        "--epochs",
        5,
        "--hidden-size",
        32,
        "--sequence-length",
        20,
        "--flag",
        "--output-dir",
        OUT / "pipelines",
    )


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    inception_time()
    lstm_ad()
    pipelines()
    print(f"\ndemo done: everything is under {OUT}/; the evaluation reports (open them in a browser):")
    reports = sorted(OUT.glob("*/evaluation/report.html")) + sorted(OUT.glob("pipelines/*/*/evaluation/report.html"))
    for path in reports:
        print(f"  {path}")


if __name__ == "__main__":
    main()
