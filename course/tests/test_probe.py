"""``course probe``'s parts, quickly: sections, bodies, findings, the report, the launcher's guard, the
command line. tests/test_probe_apps.py probes the course's own apps end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from course.manifest import ROOT
from course.probing import sections
from course.probing.run import (Finding, Launched, ProbeReport, bad_json_bodies, example, launcher_findings,
                                run_probe)
from course.probing.tools import TOOLS


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course.tooling.cli", *args], cwd=cwd, env={**os.environ},
                          capture_output=True, text=True, timeout=timeout)


def test_every_section_named_is_in_its_notebook() -> None:
    """A renamed or removed "## " heading must be renamed here too (course/probing/sections.py)."""
    named = [(k.module, k.heading, kind) for kind, k in sections.KINDS.items()]
    named += [(m, h, f"{kind} (also)") for kind, k in sections.KINDS.items() for m, h in k.also]
    named += [(m, h, code) for code, (m, h) in sections.RULES.items()]
    named += [(m, h, needle) for needle, m, h in sections.SERVER_ERRORS]
    missing = [f"{what}: {module} '## {heading}'" for module, heading, what in named
               if not sections.section(module, heading).found]
    assert not missing, "sections no notebook has (any more):\n" + "\n".join(missing)


def test_a_section_is_found_by_the_start_of_its_title() -> None:
    found = sections.section("01", "Pool exhaustion")
    assert found.found and found.heading.endswith(" · Pool exhaustion") and found.notebook.endswith(".ipynb")
    assert not sections.section("01", "A section no notebook has").found


def test_every_ruff_rule_the_probe_runs_has_a_section() -> None:
    if not (TOOLS / "ruff").exists():
        pytest.skip("ruff (.venv-test) is missing: make test-tools")
    done = subprocess.run([str(TOOLS / "ruff"), "rule", "--all", "--output-format", "json"], capture_output=True,
                          text=True, timeout=30)
    codes = [r["code"] for r in json.loads(done.stdout) if (r.get("code") or "").startswith(("ASYNC", "FAST"))]
    assert len(codes) > 15, codes
    for code in codes:
        kind = sections.rule_kind(code)
        assert sections.section(kind.module, kind.heading).found, code
    assert sections.rule_kind("ASYNC251").module == "06" and sections.rule_kind("FAST002").module == "05"


def test_server_errors_point_to_the_section_that_teaches_them() -> None:
    assert sections.server_error_kind("sqlalchemy.exc.MissingGreenlet: greenlet_spawn").module == "01"
    pool = sections.server_error_kind("TimeoutError: QueuePool limit of size 2")
    assert sections.section(pool.module, pool.heading).heading.endswith(" · Pool exhaustion")
    assert sections.server_error_kind("OperationalError: database is locked").module == "02"
    assert sections.server_error_kind("KeyError: 'x'").module == "05"


def test_bad_json_bodies_replace_one_value_each() -> None:
    body = {"amount": 12, "name": "Ada", "card": {"number": "4242", "limit": 2.5}, "active": True}
    variants = {(kind, what): json.dumps(b) for kind, what, b in bad_json_bodies(body)}
    assert variants[("nonfinite-500", "amount=NaN")] == \
        '{"amount": NaN, "name": "Ada", "card": {"number": "4242", "limit": 2.5}, "active": true}'
    assert ("nonfinite-500", "card.limit=Infinity") in variants and ("nonfinite-500", "active=NaN") in variants
    assert ("nonfinite-500", "active=Infinity") not in variants and ("nonfinite-500", "name=Infinity") not in variants
    assert variants[("surrogate-500", 'name="\\ud800"')].count('"\\ud800"') == 1
    assert body["amount"] == 12  # the original is untouched
    assert [json.dumps(b) for _, _, b in bad_json_bodies({})] == ['{"x": NaN}']


def test_example_builds_the_required_fields() -> None:
    schema = {"components": {"schemas": {
        "Order": {"type": "object", "required": ["symbol", "quantity", "email", "card"],
                  "properties": {"symbol": {"type": "string", "minLength": 2}, "quantity": {"type": "integer",
                                 "exclusiveMinimum": 0}, "email": {"type": "string", "format": "email"},
                                 "card": {"$ref": "#/components/schemas/Card"}, "note": {"type": "string"}}},
        "Card": {"type": "object", "required": ["cvv"], "properties": {"cvv": {"anyOf": [
            {"type": "string", "examples": ["123"]}, {"type": "null"}]}}}}}}
    assert example(schema, {"$ref": "#/components/schemas/Order"}) == \
        {"symbol": "AA", "quantity": 1, "email": "ada@example.com", "card": {"cvv": "123"}}


def test_what_the_launcher_counted_becomes_findings() -> None:
    engine = {"stage": "import", "where": "app.py line 9: engine = create_async_engine(URL)",
              "url": "sqlite+aiosqlite:////tmp/x/shop.db"}
    rep = {
        "import": {"engines": [engine], "clients": [], "settings": [{"stage": "import", "where": "app.py line 3",
                                                                     "class": "Settings"}],
                   "threads": [], "processes": [], "connections": []},
        "serving": {"engines": [], "settings": [],
                    "clients": [{"kind": "AsyncClient", "stage": "request", "where": "app.py line 20"}] * 3},
        "after_shutdown": {
            "engines": [{**engine, "open": 2, "opened": 2, "peak": 2}],
            "clients": [{"kind": "AsyncClient", "stage": "request", "where": "app.py line 20", "closed": False}] * 3,
            "threads": [{"name": "Thread-3", "daemon": False, "runs": "aiosqlite.core.Connection.run",
                         "stage": "startup", "where": None}],
            "processes": [], "connections": [], "tasks": [],
            "files": ["/tmp/x/shop.db", "/tmp/x/shop.db-journal", "/tmp/x/notes.txt"]},
        "lifespan_errors": [],
        "after_response": [{"text": "POST /users answered 201, then raised IntegrityError", "background": False},
                           {"text": "POST /paid answered 200, then raised ConnectionError", "background": True}],
    }
    findings: list[Finding] = []
    launcher_findings(rep, findings)
    kinds = {f.kind: f for f in findings}
    assert set(kinds) == {"import-engine", "import-settings", "request-client", "shutdown-connections",
                          "shutdown-client", "shutdown-files", "error-after-response", "background-error"}
    # the aiosqlite thread serves the open connections: evidence of that finding, not one of its own
    assert any("aiosqlite thread" in e for e in kinds["shutdown-connections"].evidence)
    assert kinds["shutdown-files"].evidence == ["still open: /tmp/x/notes.txt"]  # shop.db*: the engine's
    assert kinds["shutdown-client"].evidence[0].startswith("3 x httpx.AsyncClient created during request")
    assert kinds["import-engine"].module == "01" and kinds["request-client"].module == "02"
    assert kinds["background-error"].module == "08" and kinds["error-after-response"].module == "02"


def test_the_report_reads_as_a_table_and_as_json() -> None:
    finding = Finding.of("loop-lag", ["GET /slow alone: the loop stalled up to 0.20 s " + "x" * 120], "GET /slow")
    report = ProbeReport("main:app", "/tmp/app", False, findings=[finding], notes=["POST /items: they write"],
                         tested={"routes": "1 of 2 operation(s)"}, seconds=3.2)
    table = report.table()
    assert report.exit_code == 1 and "loop-lag" in table and "read: 06 · 1 · One blocking call" in table
    assert "What to read next:" in table and "notebooks/06_sync_to_async.ipynb" in table
    assert "Not tested: POST /items" in table and max(len(line) for line in table.splitlines()) <= 110
    data = json.loads(report.to_json())
    assert data["exit_code"] == 1 and data["findings"][0]["section"] == finding.section
    assert data["read_next"] == [{"module": "06", "section": finding.section, "notebook": finding.notebook}]
    assert ProbeReport("main:app", "/tmp/app", False).exit_code == 0
    assert ProbeReport("main:app", "/tmp/app", False, error="import failed").exit_code == 2


SMALL_APP = '''\
import os
import threading
import time
from pathlib import Path

from fastapi import FastAPI

stop = threading.Event()
poller = threading.Thread(target=stop.wait, name="poller")  # started at import, never stopped
poller.start()

app = FastAPI()


@app.get("/slow")
async def slow() -> dict:
    time.sleep(0.15)  # blocks the event loop
    return {"ok": True}


@app.post("/items")
async def create() -> dict:
    Path(os.environ["MARKER"]).write_text("written")
    return {"ok": True}
'''


def test_a_small_app_end_to_end(tmp_path) -> None:
    """The launcher's counters and the load step, without schemathesis: a thread started at import
    and left running, a route that blocks the loop; a POST never reaches the app when read-only."""
    (tmp_path / "small.py").write_text(SMALL_APP)
    marker = tmp_path / "marker"
    work = tmp_path / "work"
    work.mkdir()
    app = Launched("small:app", tmp_path, {"MARKER": str(marker)}, False, work, tmp_path, allow_writes=False)
    try:
        assert app.wait_started(30) is None, app.log()
        response, _, _ = app.send("POST", app.url + "/items")
        assert response.status_code == 405 and not marker.exists()
        assert app.send("GET", app.url + "/slow")[0].status_code == 200
    finally:
        assert app.stop(10), "the launcher must exit although the app left a non-daemon thread"
    report = run_probe("small:app", app_dir=tmp_path, env={"MARKER": str(marker)}, burst=5, fuzz_routes=False)
    kinds = {f.kind: f for f in report.findings}
    assert {"import-thread", "shutdown-threads", "loop-lag"} <= set(kinds), report.table()
    assert "small.py line 10: poller.start()" in kinds["import-thread"].evidence[0], kinds["import-thread"]
    if (TOOLS / "ruff").exists():
        assert "ruff ASYNC251" in kinds and "small.py line 17" in kinds["ruff ASYNC251"].evidence[0]
    assert "POST /items: they write" in " ".join(report.notes) and not marker.exists()


def test_cli_explains_what_it_cannot_probe(tmp_path) -> None:
    no_colon = run_cli("probe", "main")
    assert no_colon.returncode == 2 and "MODULE:ATTRIBUTE" in no_colon.stdout, no_colon.stdout + no_colon.stderr
    missing = run_cli("probe", "nowhere:app", "--json", "--no-fuzz", cwd=tmp_path)
    data = json.loads(missing.stdout)
    assert missing.returncode == 2 and "ModuleNotFoundError" in data["error"] and "importing nowhere" in data["error"]
    (tmp_path / "broken.py").write_text(textwrap.dedent('''\
        from contextlib import asynccontextmanager
        from fastapi import FastAPI

        @asynccontextmanager
        async def lifespan(app):
            raise RuntimeError("DATABASE_URL is not set")
            yield

        app = FastAPI(lifespan=lifespan)
    '''))
    broken = run_cli("probe", "broken:app", "--no-fuzz", cwd=tmp_path)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "startup failed: RuntimeError: DATABASE_URL is not set (broken.py line 6" in broken.stdout, broken.stdout
