"""Shared by every check suite: ``--target`` says which folder to grade, and ``report`` runs the
suite's driver once against it.

A suite names its module and, if it differs from the defaults, how its driver runs::

    MODULE = "03_partial_updates"
    WHAT = "importing app.py and serving it under uvicorn"   # the Got line when the driver dies
    DRIVER_TIMEOUT = 45                                      # seconds (default 60)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from course.grading.checking import run_driver
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


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest, target: Path) -> dict:
    """The driver's report (``driver.py`` beside the suite), run once per suite."""
    suite = request.module
    driver = getattr(suite, "DRIVER", Path(suite.__file__).with_name("driver.py"))
    return run_driver(driver, target, timeout=getattr(suite, "DRIVER_TIMEOUT", 60),
                      what=getattr(suite, "WHAT", "your code, run by the checks"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every check has a timeout, so a learner's hang is a message, not a frozen grader.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))
