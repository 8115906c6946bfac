"""Driver 02's fixture-run stage: the learner's conftest.py under a real pytest, with the course's
tests (fixture_tests.py) and the grader's plugin (plugins/course02_probe.py).

One pytest run, started first and in the background (it needs nothing from the app stage): the
course's tests next to copies of the learner's app.py and conftest.py, in one order, then (from a
second copy of the file, as pytest runs a test only once per run) in the reverse order. The
plugin records every httpx client built during the run and whether it is closed when the session
ends.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "plugins" / "course02_probe.py"
FIXTURE_TESTS = ["test_fake_upstream_answers", "test_fake_client_closed", "test_fake_upstream_serves_several_requests",
                 "test_fake_client_closed_after_failed_request", "test_no_override_left_behind",
                 "test_other_overrides_survive"]
ORDERS_OF_TESTS = [FIXTURE_TESTS, FIXTURE_TESTS[::-1]]
FIXTURE_FILES = ["test_course_fixture", "test_course_fixture_reversed"]  # one copy of fixture_tests.py per order
RUN_TIMEOUT = 30


def start(target: Path, scratch: Path) -> tuple[Any, Path]:
    """Start the run; returns it and the file the plugin writes the clients into."""
    import course.pytest_runner as runner

    record = scratch / "fixture-clients.json"
    files = {name: target / name for name in ("app.py", "conftest.py") if (target / name).is_file()}
    files.update({f"{stem}.py": HERE / "fixture_tests.py" for stem in FIXTURE_FILES})
    files[PLUGIN.name] = PLUGIN  # importable from the run's folder (python -m pytest puts it on sys.path)
    ids = [f"{stem}.py::{test}" for stem, order in zip(FIXTURE_FILES, ORDERS_OF_TESTS) for test in order]
    run = runner.start_pytest("-p", PLUGIN.stem, *ids, "-q", "-p", "no:randomly", files=files,
                              ini={**runner.FUNCTION_LOOPS, "timeout": 10},
                              env={"SHOP_DATABASE_URL": "sqlite+aiosqlite:///shop.db",
                                   "SHOP_UPSTREAM_URL": "http://127.0.0.1:9",  # nothing listens there
                                   "COURSE02_PROBE_RECORD": str(record)},
                              timeout=RUN_TIMEOUT, prefix="course02-fixture-",
                              # In the driver's own folder, which run_driver removes even if this process
                              # is stopped at a stage's time limit.
                              scratch_dir=scratch)
    return run, record


def problem_text(message: str, longrepr: str) -> str:
    """A failure as the learner should read it: the assertion's text, or the fixture's error and line."""
    missing = re.search(r"fixture '(\w+)' not found", message + longrepr)
    if missing:
        return f"pytest: fixture '{missing[1]}' not found (it belongs in conftest.py, next to app.py)"
    text = message.split("\nassert ")[0].strip()
    text = re.sub(r"^failed on teardown: (AssertionError: )?", "", text)
    text = re.sub(r"^failed on setup: ", "setting up the test's fixtures raised ", text)
    text = re.sub(r"^AssertionError: ", "", text)
    where = re.findall(r"^(\S+\.py):(\d+): \w+", longrepr, flags=re.M)
    where = [w for w in where if not Path(w[0]).name.startswith(tuple(FIXTURE_FILES))]
    if where and "(conftest.py line" not in text and "(app.py line" not in text:
        text += f" ({Path(where[-1][0]).name} line {where[-1][1]})"
    return text[:700]


def collect(run: Any, record: Path) -> dict:
    """The run's results: ``{"orders": [one entry per order of the tests], "clients": [...] or None}``."""
    result = run.wait()
    collect_errors = []
    for t in result.tests:
        if t.name.startswith("collecting"):
            lines = [ln[2:].strip() for ln in t.longrepr.splitlines() if ln.startswith("E ")]
            collect_errors.append(" / ".join(lines[-3:]) or t.first_line)
    orders = []
    for stem, order in zip(FIXTURE_FILES, ORDERS_OF_TESTS):
        tests = {t.name: {"outcome": t.outcome,
                          "message": "" if t.outcome == "passed" else problem_text(t.message, t.longrepr)}
                 for t in result.tests if t.file == stem and not t.name.startswith("collecting")}
        orders.append({"order": order, "tests": tests, "collect_errors": collect_errors,
                       "timed_out": result.timed_out, "timeout": RUN_TIMEOUT, "tail": result.tail(8)[-800:]})
    clients = json.loads(record.read_text()) if record.is_file() else None  # None: the session never ended
    return {"orders": orders, "clients": clients}
