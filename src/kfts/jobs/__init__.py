"""The jobs every entry point runs (train, predict, evaluate, validate, promote): each looks the algorithm up in the
registry (kfts.algorithms) and calls it."""
