"""Containers run as a non-root user, and no secret is baked into an image or a compiled pipeline."""

import re

import pytest
import yaml

from helpers import ROOT

DOCKERFILES = sorted((ROOT / "images").glob("*Dockerfile"))
COMPILED = sorted((ROOT / "pipelines" / "compiled").glob("*.yaml"))
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
SECRET_VALUE = re.compile(
    r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|gh[pousr]_[0-9A-Za-z]{36}|"
    r"xox[baprs]-[0-9A-Za-z-]{10,}"
)


def test_there_are_images_and_pipelines_to_check():
    assert len(DOCKERFILES) >= 2 and len(COMPILED) >= 2


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_a_non_root_user(dockerfile):
    last_stage = dockerfile.read_text().split("\nFROM ")[-1]
    users = re.findall(r"^USER\s+(\S+)", last_stage, re.M)
    assert users, f"{dockerfile.name}: the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{dockerfile.name}: runs as {users[-1]}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_bake_in_no_secret(dockerfile):
    for line in dockerfile.read_text().splitlines():
        if re.match(r"\s*(ENV|ARG)\s", line):
            assert not SECRET_NAME.search(line), f"{dockerfile.name}: a secret-like setting: {line.strip()}"
        assert not SECRET_VALUE.search(line), f"{dockerfile.name}: a credential: {line.strip()}"


@pytest.mark.parametrize("compiled", COMPILED, ids=lambda p: p.name)
def test_compiled_pipelines_carry_no_secret(compiled):
    text = compiled.read_text()
    assert not SECRET_VALUE.search(text)
    for document in yaml.safe_load_all(text):
        for key, value in _items(document):
            if SECRET_NAME.search(str(key)) and isinstance(value, str) and value:
                pytest.fail(f"{compiled.name}: {key} has a literal value")


def _items(node):
    """Every (key, value) pair anywhere in a parsed YAML document; env lists as (name, value)."""
    if isinstance(node, dict):
        if "name" in node and "value" in node:
            yield node["name"], node["value"]
        for key, value in node.items():
            yield key, value
            yield from _items(value)
    elif isinstance(node, list):
        for item in node:
            yield from _items(item)
