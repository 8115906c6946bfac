"""pytest plugin: one JSON record per test run, for :mod:`course.pytest_runner`.

    python -m pytest -p course.pytest_results --course-results out.json ...

Each record: ``nodeid``, ``name`` (the test's name with its parameters), ``file`` (the test
file's stem), ``doc`` (the first line of the test function's docstring), ``outcome`` (passed,
failed, error, skipped), ``message`` (the first lines of the failure), ``longrepr`` (pytest's
whole report), ``duration`` (wall seconds, setup + call + teardown), ``cpu`` (CPU seconds of the
process that ran it, all its threads: other processes on a busy machine barely change it),
``repeat`` (0 the first time a node id runs, 1 the second time with ``--keep-duplicates``...),
``worker`` and, when the test raised a ``course.grading.checking.Unmet``, ``unmet`` (called,
expected, got, hint, todo).

Works under pytest-xdist: workers attach CPU time and Unmet data to their reports as user
properties, and the controller, which sees every report, writes the file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

_CPU = "course_cpu"
_UNMET = "course_unmet"
_REPEAT = "course_repeat"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--course-results", default=None, help="write one JSON record per test here")


def _doc(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    return doc.strip().splitlines()[0].rstrip(".") if doc and doc.strip() else ""


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
    return text[:2000]


def _worker(report: pytest.TestReport) -> str:
    gateway = getattr(getattr(report, "node", None), "gateway", None)  # set by xdist in the controller
    return getattr(gateway, "id", None) or os.environ.get("PYTEST_XDIST_WORKER", "main")


class _Worker:
    """Runs where the tests run: measures CPU time and passes on what only the exception knows."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.seen: dict[str, int] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Any:
        self.started[id(item)] = time.process_time()
        repeat = self.seen.get(item.nodeid, 0)
        self.seen[item.nodeid] = repeat + 1
        item.user_properties.append((_REPEAT, repeat))
        yield
        self.started.pop(id(item), None)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        outcome = yield
        report = outcome.get_result()
        start = self.started.get(id(item))
        if start is not None:
            report.user_properties.append((_CPU, time.process_time() - start))
        if report.failed and call.excinfo is not None:
            unmet = getattr(call.excinfo.value, "as_dict", None)
            if callable(unmet) and type(call.excinfo.value).__name__ == "Unmet":
                report.user_properties.append((_UNMET, unmet()))


class _Recorder:
    """Runs in the process that sees every report (the xdist controller, or the only process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        self.docs: dict[str, str] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.docs.update({item.nodeid: _doc(item) for item in items})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(p for p in report.user_properties if isinstance(p, (tuple, list)) and len(p) == 2)
        key = (report.nodeid, int(props.get(_REPEAT, 0)))
        name = report.nodeid.split("::")[-1]
        rec = self.records.setdefault(key, {
            "nodeid": report.nodeid, "name": name, "file": Path(report.location[0]).stem,
            "doc": self.docs.get(report.nodeid, ""), "outcome": "passed", "message": "", "longrepr": "",
            "duration": 0.0, "cpu": 0.0, "repeat": key[1], "worker": _worker(report), "unmet": None,
        })
        rec["duration"] += report.duration
        if report.when == "teardown" and _CPU in props:
            rec["cpu"] = props[_CPU]
        if report.failed and rec["outcome"] not in ("failed", "error"):
            rec["outcome"] = "failed" if report.when == "call" else "error"
            rec["message"] = (f"failed on {report.when}: " if report.when != "call" else "") + _message(report)
            rec["longrepr"] = str(report.longrepr)[-20000:]
            rec["unmet"] = props.get(_UNMET)
        elif report.skipped and rec["outcome"] == "passed":
            rec["outcome"] = "skipped"
            rec["message"] = _message(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:  # an import error in a test file or a conftest: a record of its own
            self.records[(report.nodeid or "<collection>", 0)] = {
                "nodeid": report.nodeid or "<collection>", "name": f"collecting {report.nodeid or 'the tests'}",
                "file": Path(report.nodeid.split("::")[0]).stem if report.nodeid else "", "doc": "",
                "outcome": "error", "message": _message(report), "longrepr": str(report.longrepr)[-20000:],
                "duration": 0.0, "cpu": 0.0, "repeat": 0, "worker": "main", "unmet": None,
            }

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.path.write_text(json.dumps(list(self.records.values()), indent=1, default=str))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Worker(), "course-results-worker")
    path = config.getoption("--course-results")
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(Path(path)), "course-results-recorder")
