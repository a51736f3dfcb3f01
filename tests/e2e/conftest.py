"""Fixtures for the local pipeline: a moto server process and the small fixture stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.emulator.moto_server import AwsEndpoint, moto_server

FIXTURE_TEMPLATE = Path(__file__).parent / "fixture_stack" / "template.yaml"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[AwsEndpoint]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def fixture_template() -> Path:
    return FIXTURE_TEMPLATE
