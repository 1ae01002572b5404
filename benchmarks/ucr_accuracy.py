"""InceptionTime on the UCR sets (see classification.py)."""

from classification import ucr_section as section  # noqa: F401
