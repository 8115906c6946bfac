"""Shared by every check suite: ``--target`` says which folder to grade."""

from __future__ import annotations

from pathlib import Path

import pytest

from course.grading.grader import resolve_target
from course.manifest import find_module


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--target", default="exercises",
                     help="folder to grade: exercises (default), solutions, or one laid out like a module")


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest) -> Path:
    """The module folder being graded (the suite names its module in ``MODULE``)."""
    module = find_module(getattr(request.module, "MODULE"))
    path = resolve_target(module, request.config.getoption("--target"))
    if not path.is_dir():
        pytest.fail(f"nothing to grade: {path} is not a folder", pytrace=False)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every check has a timeout, so a learner's hang is a message, not a frozen grader.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))
