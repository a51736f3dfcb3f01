"""Fixtures of the review tools: the stack in moto with a few seeded photos, and the service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws
from moto_baseline import parse_templates_once
from review_support import ReviewStack, create_stack, listen

from cli.review.service import ReviewService


@pytest.fixture(scope="module")
def module_stack() -> Iterator[ReviewStack]:
    """One stack per test module (creating it takes seconds); tests reset its contents."""
    parse_templates_once()
    with mock_aws():
        resources = create_stack()
        yield ReviewStack(resources, listen(resources.event_bus))


@pytest.fixture
def review_stack(module_stack: ReviewStack) -> ReviewStack:
    module_stack.reset()
    return module_stack


@pytest.fixture
def seeded(review_stack: ReviewStack) -> ReviewStack:
    """Three bins: BIN-1 with two unsure photos after a sure one, BIN-2 a rejected photo,
    BIN-3 a sure count that contradicts its expected quantity after two that did not, BIN-4
    nothing to review (``seeded`` lists them in this order)."""
    s = review_stack
    s.photo("BIN-1", "20261126T100000Z", 2, 0.92)
    s.photo("BIN-1", "20261126T110000Z", 3, 0.31)
    s.photo("BIN-1", "20261126T120000Z", 4, 0.42)
    s.photo("BIN-2", "20261126T100000Z", None, error="transform_failed", drawn=1)
    s.photo("BIN-3", "20261125T090000Z", 5, 0.81)
    s.photo("BIN-3", "20261125T150000Z", 5, 0.77)
    s.photo("BIN-3", "20261126T090000Z", 2, 0.88)
    s.expect("BIN-3", 5)
    s.photo("BIN-4", "20261126T090000Z", 1, 0.97)
    return s


@pytest.fixture
def service(seeded: ReviewStack) -> ReviewService:
    return ReviewService.for_stack(seeded.resources, reviewer="alice", photo_mode="proxy")


def pytest_configure(config: pytest.Config) -> None:
    # moto's CloudFormation names every resource type it skips (functions, policies, alarms).
    config.addinivalue_line("filterwarnings", "ignore:Tried to parse:UserWarning")
