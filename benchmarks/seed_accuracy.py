"""InceptionTime on the seed sample (see classification.py)."""

from classification import seed_section as section  # noqa: F401
