"""What an evaluation shows in the KFP UI and its report: the evaluate component's Metrics (natural types),
ClassificationMetrics (confusion matrix and a ROC curve; LSTM-AD's flags against the labels), Markdown
summary, and an HTML report with the split in its title, the provenance and ROC / precision-recall plots."""

from __future__ import annotations

from conftest import make_classification, write_csv
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from kfts.components import evaluate
from kfts.csvio import LabeledSeries
from kfts.evaluation import flag_confusion_matrix
from kfts.inception_time import InceptionTime, Params


def _outputs(tmp_path):
    return {"evaluation": Artifact(uri=str(tmp_path / "evaluation")), "metrics": Metrics(uri=str(tmp_path / "m")),
            "classification": ClassificationMetrics(uri=str(tmp_path / "c")),
            "report": HTML(uri=str(tmp_path / "report.html")), "summary": Markdown(uri=str(tmp_path / "s.md"))}


def test_inception_time_evaluation_artifacts(tmp_path):
    labels, values = make_classification(n_per_class=8, length=16, classes=("up", "down", "flat"))
    InceptionTime(Params(filters=4, depth=3, models=1, epochs=3), device="cpu", seed=0).fit(
        LabeledSeries(labels=labels, values=values)).save(tmp_path / "model")
    test = write_csv(tmp_path / "test.csv", ([lab, *row] for lab, row in zip(labels, values)))
    data = Dataset(uri=str(test), metadata={"source": "s3://b/test.csv"})
    out = _outputs(tmp_path)
    accuracy = evaluate.python_func(model=Model(uri=str(tmp_path / "model")), data=data, metric="accuracy",
                                    split="test", **out)
    assert out["metrics"].metadata["accuracy"] == accuracy
    matrix = out["classification"].metadata["confusionMatrix"]
    assert [c["displayName"] for c in matrix["annotationSpecs"]] == ["down", "flat", "up"]
    assert sum(map(sum, (row["row"] for row in matrix["rows"]))) == 24
    assert out["classification"].metadata["confidenceMetrics"]
    page = (tmp_path / "report.html").read_text()
    assert "<title>InceptionTime evaluation: test</title>" in page and "<h2>Provenance</h2>" in page
    assert "s3://b/test.csv" in page and "filters=4 depth=3" in page
    assert "<h2>ROC and precision-recall, each class against the rest</h2><img" in page
    assert page.count('src="data:image/png;base64,') >= 3  # confusion matrix, ROC/PR, learning curves
    summary = (tmp_path / "s.md").read_text()
    assert summary.startswith("## inception-time evaluation: test\n") and f"| accuracy | {accuracy:.4f} |" in summary
    assert "| up | " in summary and "- data: s3://b/test.csv" in summary


def test_lstm_ad_flags_against_the_labels_as_a_confusion_matrix():
    metrics = {"scored_steps": 100, "anomalous_steps": 10, "flagged_steps": 12, "recall": 0.8}
    assert flag_confusion_matrix(metrics) == [[86, 4], [2, 8]]  # TP 8, FP 4, FN 2, TN 86
    assert sum(map(sum, flag_confusion_matrix(metrics))) == 100
    assert flag_confusion_matrix({"scored_steps": 100, "mse": 0.1}) is None
