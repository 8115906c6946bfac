"""Bad input gets a 4xx, never a 500: every solution app and every fixed demo app, fuzzed.

Each app runs under a real uvicorn on 127.0.0.1 and a free port, in the course's environment, with
what it needs (a seeded SQLite database, a fake upstream price service). schemathesis, from the
test-tools environment (.venv-test, ``make test-tools``; never in the learner's .venv), generates
requests from each app's OpenAPI schema (valid and invalid ones, deterministically, at most
MAX_EXAMPLES per operation and phase) and fails on any 5xx answer; the server's own log must
hold no exception either (an exception after the response was sent does not show as a 5xx).
Integer path parameters are also probed just outside 64 bits, which the deterministic generation
of an unbounded integer may never reach (probe_int64_limits).

Fuzzed: see APPS. Not fuzzed, on purpose:
    notebooks/01_database_lifecycle/engine_at_import.py   the "before" of engine_in_lifespan.py
    notebooks/01_database_lifecycle/held_session.py       the "before" of short_session.py
    notebooks/01_database_lifecycle/expired_after_commit.py with make_app() (the default
        expire_on_commit=True): its 500 (MissingGreenlet) is the lesson; make_app(expire_on_commit=False)
        is fuzzed
    notebooks/01_database_lifecycle/pg_app.py             one GET without parameters, a PostgreSQL
        load demo: nothing to generate
    notebooks/02_dependency_injection/gateway.py          leaky_app, cached_app ("before" apps) and
        per_request_app (the same endpoint as shared_app, which is fuzzed)
    notebooks/02_dependency_injection/orders_app.py       with get_session_leaky or uow_scope="request":
        the "before" apps of section 5 (create_app(..., get_session, uow_scope="function") is fuzzed)
    notebooks/02_dependency_injection/settings_app.py     uncached_app: the "before" of cached_app
    notebooks/02_dependency_injection/upstream.py         the notebook's stand-in price service
    notebooks/03_partial_updates/patch_app.py       every variant: the "before" apps of sections 1-4, whose
        500s are the lesson (policy.py and versioned.py are the fixed versions, fuzzed; merge_patch.py is
        not an app)
    notebooks/05_function_to_endpoint/naive_app.py  the "before" app (its 500s are the lesson);
        python_lock.py and for_update.py are fixed_app.py with another booking step (fixed_app.py, atomic.py
        and idempotent.py are fuzzed); legacy_transfers.py, transfers.py and bad_transfers.py are not apps
    notebooks/07_file_uploads/read_all.py, pandas_upload.py, naive_import.py   the "before" apps
        (needs_multipart.py is one trivial route; forked_maxrss.py is a script)
    notebooks/06_sync_to_async/sleeps.py, client_calls.py, thread_pools.py, databases.py   apps whose
        blocking routes are the lesson (their fixed routes are the solution's patterns, and the solution
        is fuzzed; shared_pool.py and cpu_bound.py are fuzzed); legacy.py is not an app
    exercises/09_incident_drill/app.py              the service as it went live: its 500s under load are
        the lesson (the solution is fuzzed, with course.drill's partners and seed)
    notebooks/08_background_work/bg_app.py          the "before" app (its /published task raises on purpose);
        tasks.py and photos.py have no HTTP; outbox.py is photos_api.py's API with a relay thread
    raw_connection_global.py, fd_limit.py, two_loops.py, nest_asyncio_demo.py: scripts, not apps
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

import course
from course.harness import patched_env
from course.manifest import ROOT
from course.partial import create_tickets, create_users
from course.processes import stop_tree
from course.server import serve_in_thread, serve_subprocess
from course.tooling.testkit import TEST_TOOLS, need

FUZZ = ROOT / "tests" / "tools" / "fuzz.py"
MAX_EXAMPLES = 30   # per operation and phase (50: 4448 cases instead of 3030, no more found, 17 s more)
TOOL_DEADLINE = 210  # seconds for the whole fuzz run, every app (30 apps: 124 s and 94 s of CPU at load 6)

pytestmark = pytest.mark.slow


def fake_upstream():
    """A price service for the gateways: every symbol costs 12.5."""
    from fastapi import FastAPI

    upstream = FastAPI()

    @upstream.get("/prices/{symbol}")
    async def price(symbol: str) -> dict:
        return {"symbol": symbol, "price": 12.5}

    return upstream


@contextlib.contextmanager
def in_thread(make_app: Callable, env: dict[str, str]) -> Iterator[tuple[str, Callable[[], str]]]:
    """An app built by a factory (no module-level ``app`` to hand to uvicorn), served in a thread."""
    with contextlib.ExitStack() as stack:
        with patched_env(**env):  # read by the app's lifespan, at startup
            server = stack.enter_context(serve_in_thread(make_app()))
        # course.server collects what the app raised (the innermost exception of each traceback).
        yield server.url, lambda: "".join(f"ERROR: Exception in ASGI application ({n} x): {text}\n"
                                          for text, n in server.errors.items())


@contextlib.contextmanager
def in_subprocess(app: str, app_dir: Path, env: dict[str, str],
                  extra_args: list[str] | None = None) -> Iterator[tuple[str, Callable[[], str]]]:
    with serve_subprocess(app, app_dir=app_dir, env=env, ready_timeout=60, extra_args=extra_args) as server:
        yield server.url, server.log


@contextlib.contextmanager
def solution06(tmp: Path) -> Iterator[tuple[str, Callable[[], str]]]:
    """Module 06's solution: a users table and its scoring service (course.blocking's stand-in,
    answering at once) in a thread of this process."""
    from course.blocking import slow_upstream

    db = tmp / "s06.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(1, "Ada"), (2, "Grace"), (3, "Edsger")])
    with serve_in_thread(slow_upstream(delay=0)) as scores, in_subprocess(
            "app:app", SOL / "06_sync_to_async",
            {"DATABASE_PATH": str(db), "SCORES_URL": scores.url, "RETRY_DELAY": "0"}) as served:
        yield served


@contextlib.contextmanager
def solution09(tmp: Path) -> Iterator[tuple[str, Callable[[], str]]]:
    """Module 09's solution: the co-op's database as the incident found it and its partners (the
    courier, the farm, the mail: course.drill) in a thread of this process."""
    from course.drill import seed, serve_partners, service_env

    db = tmp / "s09.db"
    seed(db)
    with serve_partners() as partners, in_subprocess("app:app", SOL / "09_incident_drill",
                                                     service_env(partners.url, db)) as served:
        yield served


@dataclass
class App:
    name: str
    start: Callable[[Path, str], contextlib.AbstractContextManager]  # (scratch folder, upstream URL)
    in_process: bool = False  # served in a thread of this process (started one at a time)
    result: dict = field(default_factory=dict)
    log: str = ""
    start_error: str | None = None


def probe_int64_limits(url: str) -> tuple[int, list[dict]]:
    """Integer path parameters just outside 64 bits (2**63 and -2**63 - 1), which deterministic
    generation may never draw for an unbounded integer: a database driver raises OverflowError on
    them. Operations that need a body or a non-string parameter besides are left to schemathesis.
    Returns the number of requests sent and the failures (fuzz.py's shape)."""
    sent, failures = 0, []
    schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            params = op.get("parameters", [])
            ints = [p["name"] for p in params if p["in"] == "path" and p.get("schema", {}).get("type") == "integer"]
            others = [p for p in params if p.get("required") and p["name"] not in ints]
            if not ints or op.get("requestBody", {}).get("required") or \
                    any(p["in"] not in ("path", "query") or p.get("schema", {}).get("type") != "string" for p in others):
                continue
            for value in (2**63, -(2**63) - 1):
                target = path
                for name in ints:
                    target = target.replace("{" + name + "}", str(value))
                for p in others:
                    target = target.replace("{" + p["name"] + "}", "A")
                query = {p["name"]: "A" for p in others if p["in"] == "query"}
                r = httpx.request(method.upper(), url + target, params=query, timeout=10)
                sent += 1
                if r.status_code >= 500:
                    failures.append({"operation": f"{method.upper()} {path}", "check": "int64 limit probe",
                                     "phase": "probe", "method": method.upper(), "url": str(r.request.url),
                                     "body": None, "status": r.status_code, "response": r.text[:500]})
    return sent, failures


def driver_seed(module: str, db: Path) -> Path:
    """Seed ``db`` as module's checks do, with its driver's own ``seed``: the apps are fuzzed on the
    data they are graded on, and a change of that data reaches the fuzzing too."""
    course.import_file(ROOT / "checks" / module / "driver.py").seed(db)
    return db


def seeded_payments(db: Path) -> str:
    """Module 05's payments database (users with balances and password hashes, and another table an
    injection could read)."""
    return str(driver_seed("05_function_to_endpoint", db))


def transfers_db(db: Path) -> str:
    """Notebook 05's transfer service: accounts, a secret table, idempotency keys (course.transfers)."""
    from course.transfers import seed

    return seed(db)


def celery_sqlite(tmp: Path, name: str) -> dict[str, str]:
    """Module 08's apps: a Celery broker and result backend in SQLite files (no worker needed), and
    the apps' own databases (the exercise's shop and provider, the notebook's photos and journal)."""
    return {"BROKER_URL": f"sqla+sqlite:///{tmp / name}-broker.db", "RESULT_BACKEND": f"db+sqlite:///{tmp / name}-results.db",
            "SHOP_DB": str(tmp / f"{name}-shop.db"), "PROVIDER_DB": str(tmp / f"{name}-provider.db"),
            "PHOTOS_DB": str(tmp / f"{name}-photos.db"), "JOURNAL_DB": str(tmp / f"{name}-journal.db")}


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def seeded(path: Path) -> str:
    """Module 01's shop: the items table the notebook's apps and the solution read."""
    return sqlite_url(driver_seed("01_database_lifecycle", path))


NB = ROOT / "notebooks"
SOL = ROOT / "solutions"

# The slowest first (they start first: 2 apps are fuzzed at a time). short_session.py waits
# 0.5 s for its "partner" on every item it finds.
APPS = [
    App("notebooks/01 short_session", lambda tmp, up: in_subprocess(
        "short_session:app", NB / "01_database_lifecycle", {"DATABASE_URL": seeded(tmp / "n01a.db")})),
    App("solutions/04 app", lambda tmp, up: in_subprocess(
        "app:app", SOL / "04_async_testing", {"DATABASE_URL": sqlite_url(tmp / "s04.db")})),
    App("notebooks/02 orders_app, get_session, uow_scope=function", lambda tmp, up: in_thread(
        lambda: (lambda m: m.create_app(sqlite_url(tmp / "n02.db"), m.get_session, uow_scope="function"))(
            course.import_file(NB / "02_dependency_injection" / "orders_app.py")), {}), in_process=True),
    App("solutions/01 app", lambda tmp, up: in_subprocess(
        "app:app", SOL / "01_database_lifecycle",
        {"DATABASE_URL": seeded(tmp / "s01.db"), "SLOW_CALL_SECONDS": "0.01"})),
    App("solutions/02 app", lambda tmp, up: in_subprocess(
        "app:app", SOL / "02_dependency_injection",
        {"SHOP_DATABASE_URL": sqlite_url(tmp / "s02.db"), "SHOP_UPSTREAM_URL": up})),
    App("notebooks/01 engine_in_lifespan", lambda tmp, up: in_subprocess(
        "engine_in_lifespan:app", NB / "01_database_lifecycle", {"DATABASE_URL": seeded(tmp / "n01b.db")})),
    App("notebooks/01 expired_after_commit, expire_on_commit=False", lambda tmp, up: in_thread(
        lambda: course.import_file(NB / "01_database_lifecycle" / "expired_after_commit.py")
        .make_app(expire_on_commit=False), {"DATABASE_URL": seeded(tmp / "n01c.db")}), in_process=True),
    App("notebooks/02 gateway shared_app", lambda tmp, up: in_subprocess(
        "gateway:shared_app", NB / "02_dependency_injection", {"GATEWAY_UPSTREAM_URL": up})),
    App("notebooks/02 auth_app", lambda tmp, up: in_subprocess(
        "auth_app:app", NB / "02_dependency_injection", {})),
    App("notebooks/02 settings_app cached_app", lambda tmp, up: in_subprocess(
        "settings_app:cached_app", NB / "02_dependency_injection", {})),
    App("notebooks/04 app", lambda tmp, up: in_subprocess(
        "app:app", NB / "04_async_testing", {"DATABASE_URL": sqlite_url(tmp / "n04a.db")})),
    App("solutions/03 app", lambda tmp, up: in_subprocess(
        "app:app", SOL / "03_partial_updates", {"DATABASE_URL": create_users(tmp / "s03.db")})),
    App("notebooks/03 policy", lambda tmp, up: in_subprocess(
        "policy:app", NB / "03_partial_updates", {"DATABASE_URL": create_tickets(tmp / "n03.db")})),
    App("notebooks/03 versioned", lambda tmp, up: in_subprocess(
        "versioned:app", NB / "03_partial_updates", {"DATABASE_URL": create_tickets(tmp / "n03v.db")})),
    App("notebooks/05 fixed_app", lambda tmp, up: in_subprocess(
        "fixed_app:app", NB / "05_function_to_endpoint", {"TRANSFERS_URL": transfers_db(tmp / "n05.db")})),
    App("notebooks/05 atomic", lambda tmp, up: in_subprocess(
        "atomic:app", NB / "05_function_to_endpoint", {"TRANSFERS_URL": transfers_db(tmp / "n05a.db")})),
    App("notebooks/05 idempotent", lambda tmp, up: in_subprocess(
        "idempotent:app", NB / "05_function_to_endpoint", {"TRANSFERS_URL": transfers_db(tmp / "n05i.db")})),
    App("solutions/05 app", lambda tmp, up: in_subprocess(
        "app:app", SOL / "05_function_to_endpoint", {"PAYMENTS_DB": seeded_payments(tmp / "s05.db")})),
    App("solutions/07 app", lambda tmp, up: in_subprocess(
        "app:app", SOL / "07_file_uploads",
        {"DATABASE_URL": sqlite_url(tmp / "s07.db"), "MAX_UPLOAD_BYTES": "1048576"})),
    App("notebooks/07 safe_import", lambda tmp, up: in_subprocess(
        "safe_import:app", NB / "07_file_uploads",
        {"DATABASE_URL": sqlite_url(tmp / "n07a.db"), "MAX_UPLOAD_BYTES": "1048576"})),
    App("notebooks/07 streaming", lambda tmp, up: in_subprocess("streaming:app", NB / "07_file_uploads", {})),
    App("notebooks/07 raw_stream", lambda tmp, up: in_subprocess("raw_stream:app", NB / "07_file_uploads", {})),
    App("solutions/06 app", lambda tmp, up: solution06(tmp), in_process=True),
    App("solutions/09 app", lambda tmp, up: solution09(tmp), in_process=True),
    App("notebooks/06 shared_pool", lambda tmp, up: in_subprocess("shared_pool:app", NB / "06_sync_to_async", {})),
    App("notebooks/06 cpu_bound", lambda tmp, up: in_subprocess("cpu_bound:app", NB / "06_sync_to_async", {})),
    App("notebooks/07 off_the_loop", lambda tmp, up: in_subprocess("off_the_loop:app", NB / "07_file_uploads", {})),
    # Module 08's APIs without a worker: a POST only puts a message in the SQLite broker.
    App("solutions/08 app", lambda tmp, up: in_subprocess(
        "app:app", SOL / "08_background_work", celery_sqlite(tmp, "s08"))),
    App("notebooks/08 photos_api", lambda tmp, up: in_subprocess(
        "photos_api:create_app", NB / "08_background_work", celery_sqlite(tmp, "n08"), ["--factory"])),
    App("notebooks/04 state_app", lambda tmp, up: in_subprocess(
        "state_app:app", NB / "04_async_testing", {"DATABASE_URL": sqlite_url(tmp / "n04b.db")})),
]

# Server errors found in demo apps this test may not change, reported to their authors: printed,
# not failed. Remove an entry once the app is fixed (the test prints when one no longer shows).
KNOWN_BUGS: dict[str, str] = {}  # app name -> the bug, printed and not failed, until it is fixed


def fuzz_all(record_time) -> dict[str, App]:
    """Start every app, fuzz them all in one run of tests/tools/fuzz.py, read each server's log."""
    apps = {app.name: App(app.name, app.start, app.in_process) for app in APPS}  # fresh results per run
    with tempfile.TemporaryDirectory(prefix="course-fuzz-") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        upstream = stack.enter_context(serve_in_thread(fake_upstream()))

        def begin(i: int, app: App):
            scratch = tmp / f"app{i}"
            scratch.mkdir()
            server = app.start(scratch, upstream.url)
            return server, server.__enter__()

        # uvicorn subprocesses start side by side (each takes a second or so to import its app).
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            started = {app.name: pool.submit(begin, i, app) if not app.in_process else None
                       for i, app in enumerate(apps.values())}
        targets, logs = [], {}
        for i, (name, future) in enumerate(started.items()):
            try:
                server, (url, logs[name]) = future.result() if future else begin(i, apps[name])
            except Exception as exc:  # noqa: BLE001 - reported with that app
                apps[name].start_error = f"{type(exc).__name__}: {exc}"
                continue
            stack.push(server.__exit__)
            targets.append({"name": name, "url": url})
        start = time.perf_counter()
        spec = tmp / "spec.json"
        spec.write_text(json.dumps({"workdir": str(tmp / "fuzz"), "max_examples": MAX_EXAMPLES, "parallel": 2,
                                    "deadline": TOOL_DEADLINE, "targets": targets}))
        # Output to files (a stray child holding a pipe cannot hang us); stop_tree also ends
        # the schemathesis runs the tool started, should it overrun.
        out, err = tmp / "fuzz.out", tmp / "fuzz.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen([str(TEST_TOOLS / "python"), str(FUZZ), str(spec)], stdout=stdout,
                                    stderr=stderr, cwd=tmp, stdin=subprocess.DEVNULL)
            try:
                proc.wait(TOOL_DEADLINE + 30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"tests/tools/fuzz.py did not finish within {TOOL_DEADLINE + 30} s", pytrace=False)
            finally:
                stop_tree(proc, timeout=5)
                code = proc.returncode
        assert code == 0, f"tests/tools/fuzz.py failed ({code}):\n{err.read_text()[-3000:]}"
        report = json.loads(out.read_text().strip().splitlines()[-1])
        for target in targets:
            name, result = target["name"], report["targets"][target["name"]]
            try:
                sent, failures = probe_int64_limits(target["url"])
            except httpx.HTTPError as exc:
                sent, failures = 0, [{"operation": "?", "check": "int64 limit probe", "phase": "probe", "method": "?",
                                      "url": target["url"], "body": None, "status": None,
                                      "response": f"{type(exc).__name__}: {exc}"}]
            apps[name].result = {**result, "schemathesis": report["schemathesis"], "probes": sent,
                                 "failures": result["failures"] + failures}
            apps[name].log = logs[name]()
        seconds = time.perf_counter() - start
        cases = sum(app.result.get("cases") or 0 for app in apps.values())
        print(f"\n{len(targets)} apps started in {start - began:.1f} s; fuzzed: {cases} cases in {seconds:.1f} s "
              f"(schemathesis {report['schemathesis']}, {report['cpu_seconds']} s of CPU)")
        record_time(f"fuzz: {len(targets)} apps, {cases} cases (schemathesis)", seconds)
        stopping = time.perf_counter()
    print(f"apps stopped in {time.perf_counter() - stopping:.1f} s")
    return apps


def problems(app: App) -> list[str]:
    """What is wrong with one app's run, in words (empty: no server error, nothing else wrong)."""
    if app.start_error:
        return [f"did not start: {app.start_error}"]
    result = app.result
    if not result:
        return ["was not fuzzed (no result from tests/tools/fuzz.py)"]
    if result["exit_code"] is None:
        return [f"schemathesis did not finish:\n{result['output_tail'][-2000:]}"]
    found = []
    for f in result["failures"][:5]:
        found.append(f"{f['check']} ({f['phase']} phase): {f['method']} {f['url']}"
                     + (f" body={f['body'][:300]!r}" if f["body"] else "") + f" -> {f['status']} {f['response'][:200]}")
    if result["errors"]:
        found.append("schemathesis could not test it:\n" + "\n".join(result["errors"])[:2000])
    if not result["cases"] or not result["requests"]:
        found.append(f"schemathesis sent no request:\n{result['output_tail'][-2000:]}")
    if "Traceback" in app.log or "Exception in ASGI application" in app.log:
        found.append("the server logged an exception (also one after its response was sent)")
    if not found and result["exit_code"] != 0:
        found.append(f"schemathesis exited with {result['exit_code']}:\n{result['output_tail'][-2000:]}")
    if found and app.log:
        found.append("server log (end):\n" + app.log[-3000:])
    return found


@pytest.mark.timeout(TOOL_DEADLINE + 90)
def test_fuzzed_apps_answer_no_5xx(record_time) -> None:
    """One test, not one per app: under pytest-xdist a module fixture would run once per worker."""
    need((TEST_TOOLS / "schemathesis").exists(), "schemathesis (.venv-test)", "make test-tools")
    apps = fuzz_all(record_time)
    failed = []
    for app in apps.values():
        result, found = app.result, problems(app)
        sent = sum((result.get("requests") or {}).values())
        print(f"{app.name:<58} {result.get('cases')} cases, {sent} requests, {result.get('seconds')} s, "
              f"{result.get('probes')} int64 probes: "
              + ("ok" if not found else "KNOWN BUG (reported)" if app.name in KNOWN_BUGS else "FAILED"))
        if app.name in KNOWN_BUGS:
            if found:
                print(f"    {KNOWN_BUGS[app.name]}\n    seen: {found[0]}")
            else:
                print(f"    no longer seen: {KNOWN_BUGS[app.name]} (remove it from KNOWN_BUGS)")
        elif found:
            failed.append(f"{app.name}:\n  " + "\n  ".join(found))
    assert not failed, "bad input must get a 4xx, never a 5xx:\n\n" + "\n\n".join(failed)


def test_test_tools_stay_out_of_the_learners_environment() -> None:
    """Playwright and schemathesis live in .venv-test only: the learner's .venv is what they install.
    (hypothesis is in both on purpose: notebook 05 generates its bad payments with it.)"""
    leaked = [name for name in ("playwright", "schemathesis") if importlib.util.find_spec(name)]
    assert not leaked, f"{leaked} importable in the course environment ({sys.prefix}): keep them in requirements-test.txt"
