"""``course probe`` on the course's own apps, every module: the closing table of issue 20 ("app or
mistake -> finding (section)"), in two tests of different costs.

``test_probe_apps`` (in ``make test``): every solution and every fixed demo app has no finding;
every naive demo app has the finding it teaches, with its section (APPS).

``test_probe_mistakes`` (marked ``probe_full``: ``make test-probe``, which CI runs after ``make
test``): every known mistake of every module has the finding it teaches, or a row that says why the
probe cannot see it from outside (MISTAKES). A known mistake with no row fails the test: add its
row. Mistakes that only edit the test suite (a conftest.py) leave the app as the solution's: the
probe has nothing to find there, and the test checks that the app's files are indeed untouched.

Each row says what the probe must find (``finds``), what it may find besides on a busy machine
(``may``, e.g. the loop stalls while 20 httpx clients are built at once), at least one of what
(``one_of``: the symptom varies from run to run) and why what the app teaches is invisible from
outside (``why``). A finding that depends on load (a blocked loop, requests waiting for each other)
is measured again by the probe before it counts (course/probing/run.py), and a row gives it the
latitude the machine needs.

Each app runs with what its checks or its notebook give it: a seeded SQLite file (the module's
driver's ``seed``, course.partial, course.transfers, course.drill), a throwaway database for the
apps that write (``writes``), and the services it calls: module 02's upstream price service, module
06's scoring service (course.blocking.slow_upstream, 0.1 s a call), module 09's courier, farm and
mail (course.drill.partners). Module 02's solution's upstream refuses every other symbol (503): the
solution answers those with its own 502 (on purpose: not a finding), and a session dependency that
skips its cleanup when the endpoint raises leaks its connection, which the probe sees after the
shutdown.

Marked ``serial``: the probe measures the event loop's lag and latencies under a burst, so it gets
the machine to itself (two probes at a time, on two cores).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

import course
from course.grading.mistakes import materialise, mistakes
from course.manifest import ROOT, find_module
from course.probing import probe
from course.probing.tools import TOOLS
from course.server import serve_in_thread
from course.tooling.testkit import need

pytestmark = [pytest.mark.slow, pytest.mark.serial]

NB, SOL, EX = ROOT / "notebooks", ROOT / "solutions", ROOT / "exercises"
PARALLEL = 2
MAX_EXAMPLES = 5
# Without schemathesis's coverage phase (most of its time): what a row must find shows in the examples
# and the fuzzing phase, but for the rows whose finding only a coverage case provokes (they say so).
QUICK, ALL_PHASES = "examples,fuzzing", "examples,coverage,fuzzing,stateful"
SCORE_SECONDS = 0.1  # module 06's scoring service: seconds per call (its driver's SLOW)


# --- what the apps need ------------------------------------------------------------------------

@dataclass
class Ctx:
    scratch: Path
    upstream: str          # module 02: answers every symbol
    flaky_upstream: str    # module 02: refuses every other symbol with a 503
    scores: str            # module 06: the scoring service, SCORE_SECONDS a call
    partners: str          # module 09: the courier, the farm and the mail service (course.drill)

    def path(self, name: str) -> Path:
        return self.scratch / f"{name}-{time.monotonic_ns()}"

    def db(self, name: str) -> Path:
        return self.path(name).with_suffix(".db")

    def seeded(self, module: str, name: str) -> Path:
        """A SQLite file seeded by the module's driver's ``seed``: the data the app is graded on."""
        db = self.db(name)
        course.import_file(ROOT / "checks" / find_module(module).name / "driver.py").seed(db)
        return db

    def seeded01(self) -> str:
        return f"sqlite+aiosqlite:///{self.seeded('01', 'shop')}"

    def fresh(self) -> str:
        return f"sqlite+aiosqlite:///{self.db('app')}"

    def wrapper(self, code: str, name: str, imports_from: Path) -> tuple[Path, dict]:
        """A module ``name`` in a folder of its own for an app built by a factory with arguments."""
        folder = self.path("wrapper")
        folder.mkdir()
        (folder / f"{name}.py").write_text(textwrap.dedent(code))
        return folder, {"PYTHONPATH": str(imports_from)}


def env01(c: Ctx) -> dict:
    return {"DATABASE_URL": c.seeded01(), "SLOW_CALL_SECONDS": "0.2"}


def env02(c: Ctx) -> dict:
    return {"SHOP_DATABASE_URL": c.fresh(), "SHOP_UPSTREAM_URL": c.flaky_upstream}


def env03(c: Ctx) -> dict:
    from course.partial import create_users

    return {"DATABASE_URL": create_users(c.db("users"))}


def tickets03(c: Ctx) -> dict:
    from course.partial import create_tickets

    return {"DATABASE_URL": create_tickets(c.db("tickets"))}


def env04(c: Ctx) -> dict:
    return {"DATABASE_URL": c.fresh()}


def env05(c: Ctx) -> dict:
    return {"PAYMENTS_DB": str(c.seeded("05", "payments"))}


def transfers05(c: Ctx) -> dict:
    """Notebook 05's transfer service: accounts, a secret table, idempotency keys (course.transfers)."""
    from course.transfers import seed

    return {"TRANSFERS_URL": seed(c.db("transfers"))}


def legacy05(c: Ctx) -> dict:
    """The naive app's legacy functions open the same database with sqlite3 (TRANSFERS_DB)."""
    from course.transfers import seed

    db = c.db("transfers")
    seed(db)
    return {"TRANSFERS_DB": str(db)}


def env06(c: Ctx) -> dict:
    """Module 06's users table and its scoring service (every call answered after SCORE_SECONDS)."""
    db = c.db("users")
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"user {i}") for i in range(1, 101)])
    return {"DATABASE_PATH": str(db), "SCORES_URL": c.scores, "RETRY_DELAY": "0.1"}


def lookups06(c: Ctx) -> dict:
    """Notebook 06's databases.py: a users view whose every row read waits 0.1 s (lookup_delay)."""
    db = c.db("lookups")
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE user_rows (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.executemany("INSERT INTO user_rows VALUES (?, ?)", [(i, f"user {i}") for i in range(1, 21)])
        conn.execute("CREATE VIEW users AS SELECT id, lookup_delay(name) AS name FROM user_rows")
    return {"DB_PATH": str(db), "LOOKUP_SECONDS": "0.1"}


def env07(c: Ctx) -> dict:
    return {"DATABASE_URL": c.fresh(), "MAX_UPLOAD_BYTES": str(2**20)}


def celery08(c: Ctx) -> dict:
    """Module 08's apps: a Celery broker and result backend in SQLite files, no worker (a POST only puts a
    message on the broker)."""
    return {"BROKER_URL": f"sqla+sqlite:///{c.db('broker')}", "RESULT_BACKEND": f"db+sqlite:///{c.db('results')}"}


def env08(c: Ctx) -> dict:
    """The exercise's checkout, with the shop's and the provider's databases."""
    return {**celery08(c), "SHOP_DB": str(c.db("shop")), "PROVIDER_DB": str(c.db("provider")),
            "INVOICE_SECONDS": "0.2"}


REDIS08_QUEUE = f"course-probe-{os.getpid()}"


def redis08(c: Ctx) -> dict:
    """The checkout on a Redis broker (a queue of its own in database 15, deleted after the table)."""
    return {**env08(c), "BROKER_URL": "redis://127.0.0.1:6379/15", "TASK_QUEUE": REDIS08_QUEUE}


def photos08(c: Ctx) -> dict:
    """Notebook 08's photo service: the same broker and backend, its photos and journal databases."""
    return {**celery08(c), "PHOTOS_DB": str(c.db("photos")), "JOURNAL_DB": str(c.db("journal"))}


def env09(c: Ctx) -> dict:
    """The co-op's database as the incident found it, and its partners (course.drill)."""
    from course.drill import seed, service_env

    db = c.db("harvest")
    seed(db)
    return service_env(c.partners, db)


@dataclass
class Row:
    name: str
    target: str
    app_dir: Callable[[Ctx], Path] | None
    env: Callable[[Ctx], dict]
    writes: bool
    finds: set[str] = field(default_factory=set)   # empty: no finding at all
    may: set[str] = field(default_factory=set)
    one_of: set[str] = field(default_factory=set)  # at least one of these (the symptom varies from run to run)
    read: dict[str, str] = field(default_factory=dict)  # kind -> the module its section must be in
    why: str = ""                                   # what the app teaches that the probe cannot see, and why
    wrapper: tuple[str, str, Path] | None = None    # (code, module name, where it imports from)
    phases: str = QUICK                             # schemathesis's phases for this row
    fuzz: bool = True                               # False: no schemathesis (the finding needs none)
    burst: int = 20                                 # requests at once in the load step


MODULE_ENV = {"01": (env01, False), "02": (env02, True), "03": (env03, True), "04": (env04, True),
              "05": (env05, True), "06": (env06, False), "07": (env07, True), "08": (env08, True),
              "09": (env09, True)}


def mistake08(name: str, finds: set[str] = frozenset(), **options) -> Row:
    """A known mistake of 08 on the SQLite transport: its broker engine stays open (solutions/08's row)."""
    return mistake_row("08", name, finds, may={"shutdown-connections"}, **options)


def mistake_row(module: str, name: str, finds: set[str] = frozenset(), may: set[str] = frozenset(),
                why: str = "", read: dict[str, str] | None = None, one_of: set[str] = frozenset(),
                phases: str = QUICK) -> Row:
    env, writes = MODULE_ENV[module]
    return Row(f"mistake {module} {name}", "app:app", lambda c: c.mistake_dir(module, name), env, writes,
               set(finds), set(may), set(one_of), read or {}, why, phases=phases)


def solution(module: str) -> Row:
    env, writes = MODULE_ENV[module]
    return Row(f"solutions/{module} app", "app:app", lambda c: find_module(module).solution, env, writes)


def demo(module: str, target: str, env: Callable[[Ctx], dict], writes: bool, finds: set[str] = frozenset(),
         name: str | None = None, **options) -> Row:
    """A demo app of notebook ``module`` (``target``: file:attribute in its demo folder)."""
    folder = NB / find_module(module).name
    return Row(name or f"notebooks/{module} {target.replace(':app', '').replace(':', ' ')}", target,
               lambda c: folder, env, writes, set(finds), **options)


def factory(module: str, name: str, code: str, env: Callable[[Ctx], dict], writes: bool,
            finds: set[str] = frozenset(), **options) -> Row:
    """A demo app built by a factory with arguments (``code`` builds ``app``)."""
    folder = NB / find_module(module).name
    return Row(f"notebooks/{module} {name}", "built:app", None, env, writes, set(finds),
               wrapper=(code, "built", folder), **options)


def no_env(c: Ctx) -> dict:
    return {}


ORDERS = """\
    import os
    from orders_app import create_app, {dep}
    app = create_app(os.environ["DATABASE_URL"], {dep}, uow_scope="{scope}")
"""
PATCH_APP = "from patch_app import make_app, {changes}\napp = make_app({changes})\n"
BAD_JSON = {"nonfinite-500", "surrogate-500"}  # NaN and a lone surrogate answered with a 500

# --- every solution and fixed demo app (no finding), every naive demo app (the finding it teaches) ------

APPS: list[Row] = [
    # solutions: nothing to find
    *(solution(m) for m in ("01", "02", "03", "04", "05", "06", "07", "09")),
    # On the SQLite transport (no server), kombu keeps each broker engine in a class-level cache that
    # nothing disposes: the one connection .delay() opened stays open after shutdown, whatever the app
    # does. On Redis, the lifespan's pool.force_close_all() leaves nothing (REDIS_ROWS; without it: two
    # sockets to Redis left open, seen on 2026-12-07).
    Row("solutions/08 app", "app:app", lambda c: find_module("08").solution, env08, True,
        may={"shutdown-connections"}),
    # fixed demo apps: nothing to find
    demo("01", "engine_in_lifespan:app", lambda c: {"DATABASE_URL": c.seeded01()}, False),
    demo("01", "short_session:app", lambda c: {"DATABASE_URL": c.seeded01()}, False),
    factory("01", "expired_after_commit, make_app(expire_on_commit=False)",
            "from expired_after_commit import make_app\napp = make_app(expire_on_commit=False)\n",
            lambda c: {"DATABASE_URL": c.seeded01()}, True),
    demo("02", "auth_app:app", no_env, True),
    demo("02", "gateway:shared_app", lambda c: {"GATEWAY_UPSTREAM_URL": c.upstream}, True),
    demo("02", "settings_app:cached_app", no_env, True),
    factory("02", "orders_app, get_session, uow_scope=function", ORDERS.format(dep="get_session", scope="function"),
            lambda c: {"DATABASE_URL": c.fresh()}, True),
    demo("03", "policy:app", tickets03, True),
    demo("03", "versioned:app", tickets03, True, name="notebooks/03 versioned (atomic=True)"),
    demo("04", "app:app", env04, True),
    demo("04", "state_app:app", env04, True),
    demo("05", "fixed_app:app", transfers05, True),
    demo("05", "atomic:app", transfers05, True),
    demo("05", "idempotent:app", transfers05, True),
    demo("07", "safe_import:app", env07, True),
    demo("07", "streaming:app", no_env, True),
    demo("07", "raw_stream:app", no_env, True),
    demo("07", "off_the_loop:app", no_env, True),
    factory("08", "photos_api", "from photos_api import create_app\napp = create_app()\n", photos08, True,
            may={"shutdown-connections"}),  # the SQLite transport's engine cache (solutions/08 below)
    # naive demo apps: the finding each one teaches
    demo("01", "engine_at_import:app", lambda c: {"DATABASE_URL": c.seeded01()}, False,
         {"import-engine", "shutdown-connections"}),
    demo("01", "held_session:app", lambda c: {"DATABASE_URL": c.seeded01()}, False, {"burst-errors"},
         read={"burst-errors": "01"}),
    demo("01", "expired_after_commit:app", lambda c: {"DATABASE_URL": c.seeded01()}, True, {"server-error"},
         name="notebooks/01 expired_after_commit (expire_on_commit=True)", read={"server-error": "01"}),
    demo("02", "gateway:leaky_app", lambda c: {"GATEWAY_UPSTREAM_URL": c.upstream}, True,
         {"request-client", "shutdown-client", "shutdown-sockets"}, may={"loop-lag"}),
    demo("02", "gateway:per_request_app", lambda c: {"GATEWAY_UPSTREAM_URL": c.upstream}, True,
         {"request-client"}, may={"loop-lag"}),
    demo("02", "gateway:cached_app", lambda c: {"GATEWAY_UPSTREAM_URL": c.upstream}, True,
         {"shutdown-client", "shutdown-sockets"}),
    demo("02", "settings_app:uncached_app", no_env, True, {"request-settings"}),
    factory("02", "orders_app, uow_scope=request", ORDERS.format(dep="get_session", scope="request"),
            lambda c: {"DATABASE_URL": c.fresh()}, True, {"error-after-response"},
            phases=ALL_PHASES),  # an order the endpoint refuses after writing: a coverage case
    factory("02", "orders_app, get_session_leaky", ORDERS.format(dep="get_session_leaky", scope="function"),
            lambda c: {"DATABASE_URL": c.fresh()}, True,
            why="the endpoint raises only for the symbol DOWN, which no generated request sends"),
    # patch_app has FastAPI's default 422 handler, which cannot echo NaN (module 05's lesson): every
    # variant has those 500s besides the one its section teaches.
    factory("03", "patch_app, make_app(everything)", PATCH_APP.format(changes="everything"), tickets03, True,
            {"server-error", *BAD_JSON}, read={"server-error": "03"}),
    demo("03", "patch_app:app", tickets03, True, {"server-error", *BAD_JSON},
         name="notebooks/03 patch_app (sent_fields)", read={"server-error": "03"},
         phases=ALL_PHASES),  # {"title": null}: a coverage case
    factory("03", "patch_app, make_app(not_none)", PATCH_APP.format(changes="not_none"), tickets03, True, BAD_JSON,
            why="exclude_none cannot clear a field: a null answers 200 and changes nothing, which only "
                "reading the row back after a null shows (patch_app has no GET)"),
    factory("03", "versioned, make_app(atomic=False)", "from versioned import make_app\napp = make_app(atomic=False)\n",
            tickets03, True, why="two PATCHes with the same If-Match at the same moment both win: the probe "
                                 "sends one request at a time to a resource"),
    demo("05", "naive_app:app", legacy05, True, {"server-error", "nonfinite-500"}, read={"server-error": "05"}),
    demo("05", "python_lock:app", transfers05, True,
         why="the lock holds in one worker; ten transfers at once against one balance through two workers "
             "show it, the probe sends one request at a time to a resource"),
    demo("05", "for_update:app", transfers05, True,
         why="SQLite has no row locks (the clause is left out): a double spend needs transfers at once "
             "against one balance"),
    demo("06", "sleeps:app", no_env, False, {"loop-lag", "ruff ASYNC251"}),
    demo("06", "client_calls:app", lambda c: {"UPSTREAM_URL": c.scores}, False,
         {"loop-lag", "request-client", "ruff ASYNC210"}),
    demo("06", "thread_pools:app", no_env, False, may={"burst-queueing"},
         why="the pools' caps (the default executor's min(32, cpus + 4) threads, anyio's 40) delay a burst of "
             "20 by less than the probe's threshold (4 times one alone, and 1 s more)"),
    demo("06", "shared_pool:app", no_env, False,
         why="the slow dependency starves another route (/health) only past 40 requests at once; the probe "
             "loads one route at a time, 20 at once"),
    # /inline blocks the loop, /thread too (the GIL), /process queues behind its pool of 2 workers
    demo("06", "cpu_bound:app", no_env, False, {"loop-lag"}, may={"burst-queueing"},
         burst=10),  # 0.1 s of CPU a request: 10 at once block the loop for a second
    demo("06", "databases:app", lookups06, False, {"loop-lag"}),
    # The memory of an upload and the loop's stall on a big file need big files: the probe sends small ones.
    demo("07", "read_all:app", no_env, True, {"server-error"}, read={"server-error": "05"},
         why="peak memory grows with the file: the probe measures no memory"),
    demo("07", "pandas_upload:app", no_env, True, {"server-error"}, read={"server-error": "05"},
         why="the DataFrame holds every row: the probe measures no memory"),
    demo("07", "naive_import:app", env07, True, may={"server-error"},
         why="a bad row is a 500 and leaves the batches before it: it takes a CSV with a header and rows, and "
             "schemathesis's generated files seldom have a second line"),
    Row("exercises/09 app (the service as it went live)", "app:app", lambda c: EX / "09_incident_drill", env09, True,
        {"request-client", "shutdown-client", "patch-overwrite", "loop-lag", "ruff ASYNC210", "burst-errors"},
        read={"burst-errors": "01"}),
]
MODULES = ("01", "02", "03", "04", "05", "06", "07", "08", "09")
# The checkout on Redis: what the SQLite transport's engine cache hides (solutions/08 above). Only where
# Redis runs (CI requires it: COURSE_REQUIRE_SERVICES).
REDIS_ROWS = [Row("solutions/08 app (Redis broker)", "app:app", lambda c: find_module("08").solution, redis08, True)]
# what the apps import: a mistake that edits none of these edits only the test suite
APP_FILES = ("app.py", "padding.py", "payments.py", "shop.py", "tasks.py")

# --- every known mistake: the finding it teaches, or why the probe cannot see it ---------------------

# Why a mistake is invisible from outside, the reasons many share:
ONE_AT_A_TIME = "The probe sends one request at a time to a resource"
RACE = "requests at once on one resource both succeed (a race): " + ONE_AT_A_TIME.lower()
RACE_WORKERS = "a lock in Python holds in one worker; requests at once through two workers race: " \
    + ONE_AT_A_TIME.lower()
NO_ETAGS = "ETags and If-Match: the probe sends no If-Match and does not read ETags"
PATCH_NULL = "a null cannot clear a field (200, nothing changed): the probe's PATCH sends values, not nulls"
WRONG_200 = "a 200 (or a 4xx) that breaks a business rule: the probe cannot know the rule"
INT64 = "schemathesis draws no integer past 64 bits for an unbounded one (tests/test_fuzz.py sends 2**63 itself)"
FAST_DB = "a blocking call to a local SQLite file stalls the loop for about a millisecond a query, too little to " \
    "tell from a busy machine"
THRESHOLD = "the probe's threshold (4 times one request alone, and 1 s more)"
NO_503 = "the scoring service never answers 503 here, so the retry never runs"
NO_CSV = "schemathesis uploads application/octet-stream, refused with a 415 before a row is read"
BIG_FILE = "it shows with an upload over the limit or of many MiB: the probe sends small ones"
MEMORY = "peak memory grows with the file: the probe measures no memory"
WORKER = "it happens in the Celery worker (deliveries, retries, limits, the charge): the probe runs the app, no worker"
BROKER_DOWN = "it shows when the broker cannot be reached: the probe's broker is up"
BROKER_HOLDS = "a card number in the broker's messages: the probe reads the answers, not the broker"
PAID_BOX = "work after a payment fails only for a member without an email or a booking the courier refuses: " \
    "generated requests pay no such order"

MISTAKES: list[Row] = [
    mistake_row("01", "engine_at_import", {"import-engine"}),
    mistake_row("01", "engine_per_request", {"request-engine"}),
    mistake_row("01", "held_session", {"burst-errors"}),
    mistake_row("01", "never_disposed", {"shutdown-connections"}),
    mistake_row("01", "one_shared_connection",
                why="requests share one connection's transaction: only two requests that write and read at "
                    "once show it"),
    mistake_row("01", "pool_grown", why="a pool of 50 works; only the database's budget of 2 says it is wrong"),
    mistake_row("01", "pool_timeout_raised", {"burst-queueing"}),
    mistake_row("01", "returns_not_yields", {"shutdown-connections"}, {"burst-errors", "server-error"},
                phases=ALL_PHASES),  # a leaked session shows once enough requests ran
    mistake_row("01", "session_per_thread",
                why="concurrent requests share a session: only two requests that write and read at once show it"),
    # The session the failed order left open holds SQLite's write lock: the next order fails with
    # "database is locked", or (when no order came after it) its connection is still open at shutdown.
    mistake_row("02", "cleanup_skipped_on_error", may={"burst-errors"},
                one_of={"server-error", "shutdown-connections"}, read={"server-error": "02"}),
    mistake_row("02", "client_never_closed", {"shutdown-client", "shutdown-sockets"}),
    mistake_row("02", "client_per_request", {"request-client"}, {"loop-lag"}),
    mistake_row("02", "session_returned_not_yielded", {"shutdown-connections"}, {"burst-errors", "server-error"}),
    mistake_row("02", "session_shared_by_requests", {"shutdown-connections"}, {"server-error", "burst-errors"}),
    mistake_row("02", "settings_built_in_lifespan",
                why="settings read twice at startup, never per request: only a count of parses shows it"),
    mistake_row("02", "settings_global", {"import-settings"}),
    mistake_row("02", "settings_not_cached", {"request-settings"}),
    # 03. Variants that keep a plain `str` (a whole app rewritten, or `str | None = None`) let a lone
    # surrogate reach the driver: a 500 besides what they teach (the solution's lengths refuse it).
    mistake_row("03", "asyncio_lock", {"surrogate-500"}, why=RACE_WORKERS),
    mistake_row("03", "conflict_409_for_stale", why=NO_ETAGS),
    mistake_row("03", "default_422_handler", BAD_JSON, read={"nonfinite-500": "05"}),
    mistake_row("03", "deferred_begin", {"surrogate-500"},
                why="two PATCHes at once: one gets 'database is locked'. " + ONE_AT_A_TIME),
    mistake_row("03", "dict_body", why="the body's schema is any object: no generated body names a field, so no "
                                       "null or wrong type reaches the database"),
    mistake_row("03", "etag_not_reloaded", {"ruff FAST002", "surrogate-500"}, why=NO_ETAGS),
    mistake_row("03", "etag_only_on_get", why=NO_ETAGS),
    mistake_row("03", "etag_unquoted", why=NO_ETAGS),
    mistake_row("03", "exclude_none_instead", why=PATCH_NULL),
    mistake_row("03", "extra_fields_ignored", why="a misspelt field answers 200 and changes nothing: a 200 is "
                                                  "not a finding"),
    mistake_row("03", "if_match_compared_then_written", why=RACE),
    mistake_row("03", "model_dump_everything", {"patch-error", "server-error", "surrogate-500"},
                read={"patch-error": "03", "server-error": "03"}),
    mistake_row("03", "no_404", {"server-error"}, phases=ALL_PHASES),  # a PATCH with a valid body: coverage
    mistake_row("03", "no_if_match", why=NO_ETAGS),
    mistake_row("03", "no_null_policy", {"server-error"}, read={"server-error": "03"},
                phases=ALL_PHASES),  # {"email": null}: a coverage case
    mistake_row("03", "nullable_fields_not_nullable", why="a null for the phone is refused (a 422): a 4xx is "
                                                          "not a finding"),
    mistake_row("03", "optional_body", {"server-error"}),
    mistake_row("03", "required_null_ignored", why="a null for the name answers 200 and changes nothing: a 200 "
                                                   "is not a finding"),
    mistake_row("03", "returns_request_body", why="the answer echoes the request, not the stored row: the probe "
                                                  "compares the GET before and after, not the PATCH's answer"),
    mistake_row("03", "unbounded_id_on_get", why=INT64),
    mistake_row("03", "validator_says_nullable", {"surrogate-500"},
                why="the schema says null is fine where the API refuses it: the probe does not judge the schema"),
    mistake_row("03", "version_bumped_only_with_if_match", why=NO_ETAGS),
    mistake_row("03", "version_id_col_always", why="two PATCHes of different fields at once: one gets a 412. "
                                                   + ONE_AT_A_TIME),
    mistake_row("03", "writes_whole_row", why="concurrent PATCHes of different fields undo each other. "
                                              + ONE_AT_A_TIME),
    # 05
    mistake_row("05", "amount_not_positive", why=WRONG_200),
    mistake_row("05", "blocking_sqlite_in_async", why=FAST_DB),
    mistake_row("05", "card_as_dict", {"server-error"}, phases=ALL_PHASES),  # a card without a number
    mistake_row("05", "card_number_with_spaces", why=WRONG_200),
    mistake_row("05", "compare_and_set_without_retry", {"ruff FAST002"},
                why="two payments at once: the second gets a 409. " + ONE_AT_A_TIME),
    mistake_row("05", "default_422_handler", BAD_JSON),
    mistake_row("05", "deferred_begin", why="two payments at once: one gets 'database is locked'. " + ONE_AT_A_TIME),
    mistake_row("05", "float_money", why=WRONG_200),
    mistake_row("05", "for_update_on_sqlite", why=RACE),
    mistake_row("05", "insufficient_funds_500", {"server-error"}, phases=ALL_PHASES),  # a valid card: coverage
    mistake_row("05", "like_lookup", why=WRONG_200),
    mistake_row("05", "no_luhn", why=WRONG_200),
    mistake_row("05", "no_row_not_checked", why=RACE),
    mistake_row("05", "no_upper_bound", why=WRONG_200),
    mistake_row("05", "python_lock", why=RACE_WORKERS),
    mistake_row("05", "read_modify_write", why=RACE),
    mistake_row("05", "returns_the_row", why="password_hash in a 200: the probe does not judge what an answer "
                                             "holds"),
    mistake_row("05", "sql_fstring", {"server-error"}),  # a quote in the email breaks the SQL
    mistake_row("05", "strictly_greater", why=WRONG_200),
    mistake_row("05", "threading_lock", why=RACE_WORKERS),
    mistake_row("05", "user_id_lax", why=WRONG_200),
    mistake_row("05", "user_id_without_upper_bound", why=INT64),
    # 06: the scoring service answers every call after SCORE_SECONDS, never a 503
    mistake_row("06", "asyncio_run_in_endpoint", {"server-error"}),
    mistake_row("06", "client_made_lazily_never_closed", {"shutdown-client", "shutdown-sockets"}),
    mistake_row("06", "client_never_closed", {"shutdown-client", "shutdown-sockets"}),
    mistake_row("06", "client_per_call", {"request-client"}, {"loop-lag"}),
    mistake_row("06", "engine_not_disposed", {"shutdown-connections"}),
    mistake_row("06", "no_wait_before_last_attempt", why=NO_503),
    mistake_row("06", "requests_in_async_def", {"loop-lag", "ruff ASYNC210"}),
    mistake_row("06", "retry_removed", why=NO_503),
    mistake_row("06", "retry_without_waiting", why=NO_503),
    mistake_row("06", "run_in_executor_everything", may={"burst-queueing"},
                why="the default executor's min(32, cpus + 4) threads delay a burst of 20 by less than " + THRESHOLD),
    mistake_row("06", "semaphore_around_calls", may={"burst-queueing"},
                why="a cap of 10 calls doubles a burst of 20's wait, less than " + THRESHOLD),
    mistake_row("06", "session_held_for_the_call", may={"burst-queueing"},
                why="the pool (5 and 10 more) holds a burst of 20 with a call's wait at most, less than " + THRESHOLD),
    mistake_row("06", "status_503_passed_through", why=NO_503),
    mistake_row("06", "sync_session", why=FAST_DB),
    mistake_row("06", "time_sleep_in_retry", {"ruff ASYNC251"}, why="the sleep itself runs only after a 503. "
                                                                     + NO_503),
    # a lock per user held for the call: a burst for one user waits in line (its lesson, the lock kept
    # after a 502, needs a 503 from the service)
    mistake_row("06", "user_lock_kept_on_502", {"burst-queueing"}),
    # 07: schemathesis uploads its files as application/octet-stream, which the solution refuses (415)
    mistake_row("07", "bad_row_500", why=NO_CSV),
    mistake_row("07", "chunk_decode", why=NO_CSV),
    mistake_row("07", "commit_per_batch", why=NO_CSV),
    mistake_row("07", "content_length_only", why=BIG_FILE),
    mistake_row("07", "decode_error_500", why=NO_CSV),
    mistake_row("07", "detail_without_line", why=NO_CSV),
    mistake_row("07", "line_counts_records", why=NO_CSV),
    mistake_row("07", "line_is_row_number", why=NO_CSV),
    mistake_row("07", "list_of_rows", why=MEMORY),
    mistake_row("07", "media_type_any_text", why=WRONG_200),
    mistake_row("07", "media_type_raw_header", why=WRONG_200),
    mistake_row("07", "media_type_substring", why=WRONG_200),
    mistake_row("07", "no_content_type_check", why=WRONG_200),
    mistake_row("07", "no_size_limit", why=BIG_FILE),
    mistake_row("07", "pandas_read_csv", why=MEMORY),
    mistake_row("07", "producer_thread", why="the reading thread runs on after a 422, while a big upload lasts: "
                                             + NO_CSV),
    mistake_row("07", "read_all", why=MEMORY),
    mistake_row("07", "shared_session", {"shutdown-connections"}),
    mistake_row("07", "size_checked_in_endpoint", why=BIG_FILE),
    mistake_row("07", "skus_kept", why=MEMORY),
    mistake_row("07", "small_files_read_whole", why=MEMORY),
    mistake_row("07", "sync_validation_pass", why=BIG_FILE),
    mistake_row("07", "temp_copy_left_on_error", {"ruff ASYNC230"},
                why="the refused upload's copy stays on disk, closed: the probe lists open files, not the disk"),
    # 09: the partners answer every call (no refused booking, no bounced mail)
    mistake_row("09", "background_tasks", why=PAID_BOX),
    mistake_row("09", "booking_first_errors_caught", why=PAID_BOX),
    mistake_row("09", "cached_client_never_closed", {"shutdown-client", "shutdown-sockets"}),
    mistake_row("09", "check_then_act", why=RACE),
    # Module 08: what the worker does (deliveries, retries, limits, the charge) and what the broker holds happen
    # where the probe does not look: it serves the app, with a broker that is up and no worker.
    mistake08("background_tasks", why="the work runs after the response, in the server's process, and a crash "
                                      "or a deploy loses it: the probe stops the server only when it is idle"),
    mistake08("card_in_message", why=BROKER_HOLDS),
    mistake08("fixed_retry_countdown", why=WORKER),
    mistake08("four_tries", why=WORKER),
    mistake08("key_per_retry", why=WORKER),
    mistake08("key_per_task", why=WORKER),
    mistake08("no_acks_late", why=WORKER),
    mistake08("no_reject_on_worker_lost", why=WORKER),
    mistake08("no_status_endpoint", why="a route that is not there: the probe sends what the schema lists"),
    mistake08("no_time_limit", why=WORKER),
    mistake08("not_idempotent", why=WORKER),
    mistake08("outage_500", why=BROKER_DOWN),
    mistake08("outage_in_process", why=BROKER_DOWN),
    mistake08("outage_lost", why=BROKER_DOWN),
    mistake08("publish_in_transaction", why=WORKER),
    # a whole app.py of its own, without the solution's 422 handler: NaN and a lone surrogate are 500s
    mistake08("relay_only_on_request", BAD_JSON, why=BROKER_DOWN),
    mistake08("request_waits_out_the_outage", why=BROKER_DOWN),
    mistake08("retries_no_backoff", why=WORKER),
    mistake08("retries_unbounded", why=WORKER),
    mistake08("retry_delay_default", why=WORKER),
    mistake08("retry_everything", why=WORKER),
    mistake08("send_then_save", why=WORKER),
    mistake08("soft_limit_swallowed", why=WORKER),
    mistake08("status_404_when_pending", why=WRONG_200),
    mistake08("swallowed_exception", why=WORKER),
    mistake08("uncapped_redelivery", why=WORKER),
    mistake08("work_in_request", why="the charge and the invoice inside the request make every checkout slow, "
                                     "alone as much as in a burst: the probe's load step compares the two, on GET "
                                     "routes"),
    mistake_row("09", "client_per_request", {"request-client", "shutdown-client"}, {"loop-lag", "shutdown-sockets"}),
    mistake_row("09", "client_per_request_closed", {"request-client"}, {"loop-lag"}),
    mistake_row("09", "create_task_fire_and_forget", why=PAID_BOX),
    mistake_row("09", "exclude_defaults", why=PATCH_NULL),
    mistake_row("09", "exclude_none_instead", why=PATCH_NULL),
    mistake_row("09", "for_update_on_sqlite", why=RACE),
    mistake_row("09", "held_session", {"burst-errors"}, read={"burst-errors": "01"}),
    mistake_row("09", "model_dump_everything", {"patch-overwrite"}),
    mistake_row("09", "order_guard_only", why=RACE),
    mistake_row("09", "pandas_read_csv", why=MEMORY),
    mistake_row("09", "pool_timeout_raised", {"burst-queueing"}),
    mistake_row("09", "python_lock", why=RACE_WORKERS),
    mistake_row("09", "read_all_upload", why=MEMORY),
    mistake_row("09", "requests_in_async_def", {"loop-lag", "ruff ASYNC210"}),
    mistake_row("09", "rows_list_then_insert", why=MEMORY),
    mistake_row("09", "scope_function_dependency", {"burst-errors"}, read={"burst-errors": "01"}),
    mistake_row("09", "worker_never_stopped", {"shutdown-tasks"}),
]


def suite_only_mistakes() -> dict[str, str]:
    """Known mistakes that edit only the test suite: the probe sees the solution's app."""
    found = {}
    for module in MODULES:
        for m in mistakes(find_module(module)):
            files = {e["file"] for e in m.spec.get("edits", [])}
            if not files & set(APP_FILES):
                found[f"mistake {module} {m.name}"] = ", ".join(sorted(files))
    return found


def probe_row(row: Row, ctx: Ctx) -> dict:
    env = row.env(ctx)
    if row.wrapper:
        code, name, imports_from = row.wrapper
        app_dir, extra = ctx.wrapper(code, name, imports_from)
        env = {**env, **extra}
    else:
        app_dir = row.app_dir(ctx)
    report = probe(row.target, app_dir=app_dir, env=env, allow_writes=row.writes, max_examples=MAX_EXAMPLES,
                   phases=row.phases, fuzz=row.fuzz, burst=row.burst)
    return {"row": row, "report": report}


def problems(row: Row, report) -> list[str]:
    kinds = {f.kind for f in report.findings}
    found = []
    if report.error:
        found.append(f"could not be probed: {report.error}")
    missing = row.finds - kinds
    if missing:
        found.append(f"missing {sorted(missing)}")
    if row.one_of and not row.one_of & kinds:
        found.append(f"none of {sorted(row.one_of)}")
    extra = kinds - row.finds - row.may - row.one_of
    if extra:
        found.append(f"unexpected {sorted(extra)}")
    for kind, module in row.read.items():
        wrong = [f"{f.module} · {f.section}" for f in report.findings if f.kind == kind and f.module != module]
        if wrong:
            found.append(f"{kind} points to {wrong}, not to module {module}")
    return found


@pytest.fixture(scope="module")
def ctx():
    from fastapi import FastAPI, HTTPException

    from course.blocking import slow_upstream
    from course.drill import partners

    upstream, flaky = FastAPI(), FastAPI()

    @upstream.get("/prices/{symbol}")
    async def price(symbol: str) -> dict:
        return {"symbol": symbol, "price": 12.5}

    @flaky.get("/prices/{symbol}")
    async def flaky_price(symbol: str) -> dict:
        if zlib.crc32(symbol.encode()) % 2:
            raise HTTPException(503, "busy")
        return {"symbol": symbol, "price": 12.5}

    with tempfile.TemporaryDirectory(prefix="course-probe-apps-") as tmp, \
            serve_in_thread(upstream) as up, serve_in_thread(flaky) as fl, \
            serve_in_thread(slow_upstream(delay=SCORE_SECONDS)) as scores, serve_in_thread(partners()) as drill:
        c = Ctx(Path(tmp), up.url, fl.url, scores.url, drill.url)
        c.mistake_dir = lambda module, name: _materialise(c, module, name)  # type: ignore[attr-defined]
        yield c


def _materialise(c: Ctx, module: str, name: str) -> Path:
    mistake = next(m for m in mistakes(find_module(module)) if m.name == name)
    return materialise(mistake, c.path(f"{module}-{name}"))


def _section(report, kind: str) -> str:
    f = next(f for f in report.findings if f.kind == kind)
    return f"{f.module} · {f.section.split(' · ', 1)[-1]}"


def run_table(rows: list[Row], ctx: Ctx, label: str, record_time) -> tuple[list[str], list[str]]:
    """Probe every row, two at a time; return the table's lines and what went wrong."""
    start = time.perf_counter()
    load = os.getloadavg()[0]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(lambda row: probe_row(row, ctx), rows))
    seconds = time.perf_counter() - start
    record_time(f"course probe: {label}, {len(rows)} rows, {PARALLEL} at a time", seconds)
    failed, lines = [], []
    for r in results:
        row, report = r["row"], r["report"]
        found = problems(row, report)
        kinds = sorted({f.kind for f in report.findings})
        shown = ", ".join(f"{k} ({_section(report, k)})" for k in kinds) or "no finding"
        if row.why:
            shown += f"  [not visible from outside: {row.why}]"
        lines.append(f"{row.name:<64} {shown}   {report.seconds:.1f} s, {report.timings.get('cpu', 0):.1f} s CPU")
        if found:
            failed.append(f"{row.name}: " + "; ".join(found) + "\n" + textwrap.indent(report.table(), "    "))
    print(f"\ncourse probe, {label}: app or mistake -> finding (section); wall and CPU seconds\n" + "\n".join(lines)
          + f"\n{len(rows)} rows in {seconds:.0f} s, {PARALLEL} at a time (load average {load:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end)")
    return lines, failed


def need_tools() -> None:
    need((TOOLS / "schemathesis").exists() and (TOOLS / "ruff").exists(), "schemathesis and ruff (.venv-test)",
         "make test-tools")


@pytest.mark.timeout(900)
def test_probe_apps(ctx, record_time) -> None:
    """Every solution and fixed demo app: no finding; every naive demo app: the finding it teaches."""
    need_tools()
    from course.services import redis_available

    rows = APPS + (REDIS_ROWS if redis_available() else [])
    try:
        _, failed = run_table(rows, ctx, "solutions and demo apps", record_time)
    finally:
        if rows != APPS:
            import redis

            with contextlib.closing(redis.Redis.from_url("redis://127.0.0.1:6379/15")) as r:
                r.delete(REDIS08_QUEUE, f"_kombu.binding.{REDIS08_QUEUE}")
    if rows == APPS:
        print("Redis is not running here: solutions/08 on a Redis broker was not probed")
    assert not failed, "\n\n".join(failed)


@pytest.mark.probe_full
@pytest.mark.timeout(2400)
def test_probe_mistakes(ctx, record_time) -> None:
    """Every known mistake of every module: the finding it teaches, or why the probe cannot see it."""
    need_tools()
    rows = {row.name: row for row in MISTAKES}
    suite_only = suite_only_mistakes()
    unknown = [f"mistake {module} {m.name}" for module in MODULES for m in mistakes(find_module(module))
               if f"mistake {module} {m.name}" not in rows and f"mistake {module} {m.name}" not in suite_only]
    assert not unknown, f"known mistakes with no row in MISTAKES (what does course probe find?): {unknown}"
    gone = [name for name in rows if name not in {f"mistake {module} {m.name}" for module in MODULES
                                                  for m in mistakes(find_module(module))}]
    assert not gone, f"rows in MISTAKES for mistakes that no longer exist: {gone}"
    _, failed = run_table(MISTAKES, ctx, "known mistakes", record_time)
    for name, files in suite_only.items():
        print(f"{name:<64} test-suite mistake ({files}): the app is the solution's")
    assert not failed, "\n\n".join(failed)


def test_solution_probe_has_no_finding(ctx, record_time) -> None:
    """One full probe of a solution (every schemathesis phase, writes allowed): no finding."""
    need((TOOLS / "schemathesis").exists(), "schemathesis (.venv-test)", "make test-tools")
    report = probe("app:app", app_dir=SOL / "02_dependency_injection", env=env02(ctx), allow_writes=True)
    record_time("course probe solutions/02 (writes allowed)", report.seconds)
    # The 30 s budget is make bench's to judge (measured alone); here the time is only recorded.
    assert not report.findings, report.table()


LEARNER_MAIN = '''\
from fastapi import FastAPI

from shop.db import engine  # noqa: F401 - "the database is ready when the module is"
from shop.routes import router

app = FastAPI(title="My shop")
app.include_router(router)
'''
LEARNER_DB = '''\
import os

from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///shop.db"))
'''
LEARNER_ROUTES = '''\
import time

from fastapi import APIRouter
from sqlalchemy import text

from shop.db import engine

router = APIRouter()


@router.get("/health")
async def health() -> dict:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    time.sleep(0.15)  # "give the replica a moment"
    return {"ok": True}
'''


def test_learner_shaped_app_from_a_terminal(tmp_path) -> None:
    """A folder outside the repository, main.py and a package, probed as a learner does: from a
    terminal in that folder, with the course's ``course`` on PATH; ``--json`` parses."""
    need((TOOLS / "ruff").exists(), "ruff (.venv-test)", "make test-tools")
    project = tmp_path / "myservice"
    (project / "shop").mkdir(parents=True)
    (project / "main.py").write_text(LEARNER_MAIN)
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "db.py").write_text(LEARNER_DB)
    (project / "shop" / "routes.py").write_text(LEARNER_ROUTES)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["course", "probe", "main:app", "--json", "--env", f"DATABASE_URL=sqlite+aiosqlite:///"
                           f"{tmp_path / 'shop.db'}"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    kinds = {f["kind"]: f for f in report["findings"]}
    assert {"import-engine", "shutdown-connections", "loop-lag", "ruff ASYNC251"} <= set(kinds), done.stdout
    assert "shop/db.py line 5" in " ".join(kinds["import-engine"]["evidence"]), kinds["import-engine"]
    sleep_line = LEARNER_ROUTES.splitlines().index('    time.sleep(0.15)  # "give the replica a moment"') + 1
    assert f"shop/routes.py line {sleep_line}" in " ".join(kinds["ruff ASYNC251"]["evidence"]), kinds["ruff ASYNC251"]
    assert kinds["loop-lag"]["module"] == "06" and report["exit_code"] == 1
    assert {(r["module"], r["section"]) for r in report["read_next"]} >= {("01", kinds["import-engine"]["section"])}
    assert not (project / "shop.db").exists()  # the app used the database it was given
    table = subprocess.run(["course", "probe", "main:app", "--env", f"DATABASE_URL=sqlite+aiosqlite:///"
                            f"{tmp_path / 'shop.db'}"], cwd=project, env=env, capture_output=True, text=True,
                           timeout=120)
    assert table.returncode == 1 and "What to read next:" in table.stdout and "import-engine" in table.stdout, \
        table.stdout + table.stderr
    with contextlib.suppress(ValueError):
        json.loads(table.stdout)
        pytest.fail("the table is not JSON")
