"""Kubeflow at the edge: KFP components and pipelines, local runs, compile, submit and schedule, Katib, Kubeflow
Trainer, KServe deployment, the cluster API."""
