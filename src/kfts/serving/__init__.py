"""Real-time serving with KServe: the predictor (model.py), `kfts serve` (server.py) and the CLI commands
`serve` and `deploy render` (commands.py). Importing this package does not import kserve."""
