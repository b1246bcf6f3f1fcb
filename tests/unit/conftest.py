"""Shared fixtures of the unit tests.

A development instance (`mssante-relay init`: PKI with RSA keys, trust list, master key,
relay.toml) is written once per test module: RSA key generation is the slow part.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from relay.ops.instance import init_instance


@pytest.fixture(scope="module")
def dev_instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a freshly initialised instance (holds relay.toml). Tests must not modify it."""
    target = tmp_path_factory.mktemp("instance") / "inst"
    config = init_instance(target)
    assert config == target / "relay.toml"
    return target
