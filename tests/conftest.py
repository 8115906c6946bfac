"""Course-level tests: a timing table printed at the end of `make test`."""

from __future__ import annotations

import pytest

TIMINGS: list[tuple[str, float]] = []


@pytest.fixture(scope="session")
def record_time():
    def record(label: str, seconds: float) -> None:
        TIMINGS.append((label, seconds))
    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("course timings")
        for label, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f} s  {label}")
