"""pytest plugin (loaded by runner.py): CPU and wall time of every test, setup + call + teardown.

CPU time counts only this process (all its threads, including aiosqlite's), so other processes on
a busy machine barely change it; wall time includes every moment another process had the CPU.
"""

import json
import os
import time
from pathlib import Path

import pytest

_times: dict[str, list[float]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    _times[item.name] = [time.process_time() - cpu, time.perf_counter() - wall]


def pytest_sessionfinish(session):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(f"times-{worker}.json").write_text(json.dumps(_times))
