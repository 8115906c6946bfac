"""pytest plugin (pyproject.toml's addopts): the ``record_time`` fixture for the course's own tests.

Tests run in several processes (pytest-xdist), so each timing is appended to the file named by
``COURSE_TIMINGS`` (set by course.tooling.testrun, which prints the table at the end of
``make test``); without it, pytest prints its own table."""

from __future__ import annotations

import json
import os

import pytest

TIMINGS: list[tuple[str, float]] = []


@pytest.fixture(scope="session")
def record_time():
    def record(label: str, seconds: float) -> None:
        path = os.environ.get("COURSE_TIMINGS")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"label": label, "seconds": round(seconds, 2)}) + "\n")
        else:
            TIMINGS.append((label, seconds))
    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("course timings")
        for label, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f} s  {label}")
