"""kfts: time-series deep learning (InceptionTime, LSTM-AD) for Kubeflow Pipelines and KServe."""

__version__ = "0.1.0"
