"""InceptionTime on seed-samples/inception_time with default hyperparameters (see classification.py)."""

from classification import seed_section as section  # noqa: F401
