"""Fixtures for the workshop tests (collected only by `make test-workshop`, not by `make test`).
The harness itself is hubkit.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tests import hubkit (pytest's importlib mode)

from hubkit import NOTE, Hub, postgres_leftovers  # noqa: E402


def pytest_terminal_summary(terminalreporter) -> None:
    if NOTE:
        terminalreporter.section("workshop hub")
        for line in NOTE:
            terminalreporter.write_line(line)


@pytest.fixture
def hub_factory() -> Iterator:
    """hub_factory(**settings) starts a hub; every hub started is stopped after the test, and the
    test fails if anything of its run is left running or listening."""
    hubs: list[Hub] = []

    def make(**settings: str) -> Hub:
        hub = Hub(**settings)
        hubs.append(hub)
        hub.start()
        return hub

    yield make
    problems = []
    for hub in hubs:
        try:
            hub.stop()
            if hub.leftovers:
                problems.append(f"processes left running after the hub stopped: {hub.leftovers}")
            if hub.leftover_listeners:
                problems.append(f"still listening after the hub stopped: {hub.leftover_listeners}")
            databases = postgres_leftovers(hub.run_id)
            if databases:
                problems.append(f"PostgreSQL databases/roles left by this run's kernels: {databases}")
        finally:
            hub.remove_files()
    assert not problems, "\n".join(problems)
