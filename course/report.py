"""pytest plugin used by the grader: writes one JSON record per expectation.

    pytest checks/01_database_lifecycle -p course.report --course-report out.json --target ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from course.checking import Unmet


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--course-report", default=None, help="write expectation results as JSON here")


def _expectation_name(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    if doc and doc.strip():
        return doc.strip().splitlines()[0].rstrip(".")
    return item.name.removeprefix("test_").replace("_", " ")


class _Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        outcome = yield
        report = outcome.get_result()
        rec = self.records.setdefault(item.nodeid, {
            "nodeid": item.nodeid, "test": item.name, "name": _expectation_name(item),
            "outcome": "passed", "duration": 0.0, "unmet": None, "error": None, "traceback": "",
        })
        rec["duration"] += report.duration
        if report.failed:
            rec["outcome"] = "failed"
            if call.excinfo is not None:
                exc = call.excinfo.value
                if isinstance(exc, Unmet):
                    rec["unmet"] = exc.as_dict()
                else:
                    rec["error"] = f"{type(exc).__name__}: {exc}"
            rec["traceback"] = str(report.longrepr)
        elif report.skipped and rec["outcome"] == "passed":
            rec["outcome"] = "skipped"
            if call.excinfo is not None:
                rec["error"] = str(call.excinfo.value)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.path.write_text(json.dumps(list(self.records.values()), indent=1))


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--course-report")
    if path:
        config.pluginmanager.register(_Recorder(Path(path)), "course-report-recorder")
