"""KFP pipelines of kfts: pipelines.inception_time, pipelines.lstm_ad and pipelines.retraining.

Each module has build(cluster=..., ...) returning the pipeline function; `kfts pipeline compile` (and
`make compile`) writes their IR YAML, the committed variants under pipelines/compiled/ (see
pipelines/README.md).
"""
