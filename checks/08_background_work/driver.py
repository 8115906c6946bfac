"""Runs a learner's module-08 app and Celery worker for real, kills the worker mid-task, and
reports what happened, as JSON.

    python driver.py APP_DIR

It starts ``celery -A tasks worker -c 3`` on Celery's SQLite transport (no server) in the scratch
folder (polled every 0.1 s instead of kombu's 1 s, to wait less) first, so that the worker boots
while this process imports tasks.py and app.py and starts app.py under uvicorn on 127.0.0.1. Three
pool processes, not two: order D's two tasks then run beside A's redelivery instead of before it.
Then it checks out order C (a card whose payment provider times out once), A (a good card), B (a
declined card), and D: once with a bad body, then twice at the same moment with a good one. As soon
as A's card is charged, a thread of the driver SIGKILLs the pool process running A, mid-task
(during the invoice). It reads the result backend until every task has its outcome, asks the learner's
status endpoint for A's and B's state each time it changes, and counts in the shop's database what
really happened. It never judges: the checks read the report.

Every request's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error"); a checkout's adds "task_id" (None
when the answer holds none).

Report keys (each check names the ones it needs with ``require``):

    invoice_seconds   how long send_invoice() takes in this run
    posts             {"A"|"B"|"C": checkout}: POST /orders/order-X/checkout
    kill              {"charged", "within", "charge_pid", "driver_pid", "worker_pid", "pool_pids", "killed"}:
                      whether A was charged within that many seconds of the first POST, the process that made
                      the charge, and whether it was killed
    states            {"A"|"B": [state, ...]}: the distinct states GET /tasks/{task_id} answered, in order,
                      asked each time the result backend's state changed ("HTTP 404: ..." when it did not
                      answer 200 with a "state")
    backend_states    {"A"|"B"|"C": state}: the task's final state in the result backend, read by the driver
    backend_errors    {"A"|"B"|"C": "Type: message"}: what a task in FAILURE raised, from the result backend
    outcome_wait      seconds the driver waits for every task's outcome
    db                {"A"|"B"|"C": {"calls", "charges", "invoices"}}: gateway calls, charges and invoices
                      recorded for each order
    together          {"refused", "answers": [checkout, checkout], "states": [state, state], "db": {...}}: order D
                      checked out with "amount_cents": -5, then with a good body twice at the same moment; each
                      task's final state, and D's counts in the shop
    server_errors     the exceptions the app raised, with the app's line
    stops             the serving stage's stop (SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
import uuid

from course.grading.checking import Driver, DriverError

INVOICE = 0.6        # seconds send_invoice() takes: the slow part of the work
POLL = 0.1           # seconds between the worker's polls of the SQLite broker (kombu's default: 1 s)
CARDS = {"A": "4242424242424242", "B": "4000000000000002", "C": "4000000000000119"}
GOOD = CARDS["A"]
FINAL = ("SUCCESS", "FAILURE")
CHARGE_WAIT = 6.0    # seconds for order A's charge to appear
OUTCOME_WAIT = 12.0  # seconds for every task to reach an outcome
NO_PROGRESS = 5.0    # ...but stop sooner when no task has even left PENDING by then: no worker is
                     # running them (the reference answer's tasks start within about 0.2 s)
WORKER_HINT = "run `celery -A tasks worker -l info` in your exercise folder and read its first error."


def shop_rows(db_path: str, sql: str, *args) -> list:
    if not os.path.exists(db_path):
        return []
    db = sqlite3.connect(db_path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # no such table yet
        return []
    finally:
        db.close()


def counts(shop_db: str, order: str) -> dict:
    return {key: len(shop_rows(shop_db, f"SELECT 1 FROM {table} WHERE order_id = ?", f"order-{order}"))
            for key, table in (("calls", "gateway_calls"), ("charges", "charges"), ("invoices", "invoices"))}


def with_task_id(answer: dict) -> dict:
    body = answer["json"]
    return {**answer, "task_id": body.get("task_id") if isinstance(body, dict) else None}


class WorkerDriver(Driver):
    """A Driver that stops the Celery worker it started before it reports, also when a stage overran
    its limit (the watchdog reports, then ends the process at once): the worker is the checks' own
    process, never a leftover of the learner's code."""

    worker = None

    def emit(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(Exception):
                self.worker.stop(0)  # idle by now, or stuck: no warm shutdown to wait for
        super().emit()


def main(d: WorkerDriver) -> None:
    from course.queues import declare_sqlite_queue, start_worker

    shop_db = str(d.scratch / "shop.db")
    env = {"BROKER_URL": f"sqla+sqlite:///{d.scratch / 'broker.db'}",
           "RESULT_BACKEND": f"db+sqlite:///{d.scratch / 'results.db'}",
           "TASK_QUEUE": f"checks-{uuid.uuid4().hex[:8]}", "SHOP_DB": shop_db, "INVOICE_SECONDS": str(INVOICE)}
    os.environ.update(env)
    d.report.update(invoice_seconds=INVOICE, outcome_wait=OUTCOME_WAIT)
    if not (d.target / "tasks.py").is_file():
        raise DriverError(f"there is no tasks.py in {d.target}", hint="the Celery app and the task live in tasks.py.")
    # First the worker (it takes a second or two to boot), then, while it boots, the app: its import and startup.
    worker = d.worker = start_worker("tasks", app_dir=d.target, env=env, concurrency=3, sqlite_poll_interval=POLL)
    tasks = d.import_stage("tasks.py", needs="celery_app")
    module = d.import_stage("app.py")
    # The broker transport's and the result backend's modules too (about a second on a busy machine); they
    # touch the databases only once the worker is ready (see the "worker" stage).
    import celery.backends.database  # noqa: F401
    import kombu.transport.sqlalchemy  # noqa: F401
    with d.serve(module.app) as svc:
        mark = svc.mark()
        with d.stage("worker", limit=20, doing="starting the Celery worker (celery -A tasks worker)", hint=WORKER_HINT):
            try:
                worker.wait_ready(18)
            except (RuntimeError, TimeoutError) as exc:
                raise DriverError(str(exc).splitlines()[0] + " " + worker.log()[-400:].replace("\n", " / "),
                                  hint=WORKER_HINT) from None
            # The worker has created the broker's and the result backend's tables: this process sets both up now,
            # so the first POST is timed like every later one, not with their one-off set-up.
            declare_sqlite_queue(env["BROKER_URL"], env["TASK_QUEUE"])
            tasks.celery_app.backend  # noqa: B018 - created on first use
        exercise(d, svc, tasks, worker, shop_db)
        d.report["server_errors"] = svc.errors_since(mark)


def checkout(svc, order: str, body: dict) -> dict:
    return with_task_id(svc.send_sync("POST", f"/orders/order-{order}/checkout", json=body))


def kill_charging_process(worker, shop_db: str) -> dict:
    """Wait until order A is charged, then SIGKILL the process that charged it (if it is a pool process)."""
    import psutil

    kill = {"driver_pid": os.getpid(), "worker_pid": worker.pid, "charged": False, "killed": False,
            "within": CHARGE_WAIT}
    deadline = time.monotonic() + CHARGE_WAIT
    while time.monotonic() < deadline:
        rows = shop_rows(shop_db, "SELECT pid FROM charges WHERE order_id = 'order-A' ORDER BY id")
        if rows:
            kill.update(charged=True, charge_pid=rows[0][0])
            break
        time.sleep(0.02)
    kill["pool_pids"] = [p.pid for p in worker.pool_children()]
    if kill["charged"] and kill["charge_pid"] in kill["pool_pids"]:
        with contextlib.suppress(psutil.NoSuchProcess, RuntimeError):
            worker.kill_pool_child(kill["charge_pid"])
            kill["killed"] = True
    return kill


def exercise(d: Driver, svc, tasks, worker, shop_db: str) -> None:
    good = {"amount_cents": 1250, "card": GOOD}
    watched: dict = {}

    def watch() -> None:
        try:
            watched["kill"] = kill_charging_process(worker, shop_db)
        except Exception as exc:  # noqa: BLE001 - raised again in the "kill" stage
            watched["error"] = exc

    # It watches for A's charge while the orders are sent, so that A is killed mid-invoice however slowly they go.
    killer = threading.Thread(target=watch, daemon=True, name="checks-killer")
    killer.start()
    with d.stage("requests", limit=15, doing="POST /orders/{order_id}/checkout for four orders"):
        # C first: its retry's countdown runs while A is charged, killed and delivered again (the longest part).
        posts = {name: checkout(svc, name, {"amount_cents": 1250, "card": CARDS[name]}) for name in ("C", "A", "B")}
        refused = checkout(svc, "D", {**good, "amount_cents": -5})
        at_once = svc.together(*(svc.send("POST", "/orders/order-D/checkout", json=good) for _ in range(2)))
        twice = [with_task_id(a) for a in asyncio.run(at_once)]
        d.report["posts"] = {name: posts[name] for name in CARDS}
    with d.stage("kill", limit=CHARGE_WAIT + 5, doing="waiting for order A's charge, then killing the process running it"):
        killer.join()
        if "error" in watched:
            raise watched["error"]
        d.report["kill"] = watched["kill"]
    with d.stage("outcomes", limit=OUTCOME_WAIT + 5, doing="reading each task's outcome, and GET /tasks/{task_id}"):
        sent = {**posts, "D1": twice[0], "D2": twice[1]}
        backend, errors, states = outcomes(svc, tasks, {k: a["task_id"] for k, a in sent.items() if a["task_id"]},
                                           shop_db)
    d.report.update(states=states, backend_states={n: backend.get(n) for n in CARDS},
                    backend_errors={n: errors[n] for n in CARDS if n in errors},
                    db={name: counts(shop_db, name) for name in CARDS},
                    together={"refused": refused, "answers": twice, "states": [backend.get("D1"), backend.get("D2")],
                              "db": counts(shop_db, "D")})


def outcomes(svc, tasks, ids: dict, shop_db: str) -> tuple[dict, dict, dict]:
    """Read each task's state in the result backend until all have an outcome (and A its invoice, unless it
    failed); each time A's or B's state changes, ask the app's status endpoint too."""
    from celery.result import AsyncResult

    backend: dict[str, str | None] = {key: None for key in ids}
    errors: dict[str, str] = {}
    states: dict[str, list[str]] = {"A": [], "B": []}
    asked: dict[str, str | None] = {}
    start = time.monotonic()
    while True:
        for key, task_id in ids.items():
            with contextlib.suppress(Exception):
                result = AsyncResult(task_id, app=tasks.celery_app)
                backend[key] = result.state
                if result.state == "FAILURE":
                    errors[key] = f"{type(result.result).__name__}: {result.result}"[:300]
            if key in states and (key not in asked or asked[key] != backend[key]):
                asked[key] = backend[key]  # the API asked after the backend: it has seen at least as much
                got = svc.send_sync("GET", f"/tasks/{task_id}", timeout=5)
                body = got["json"]
                state = (str(body["state"]) if got["status"] == 200 and isinstance(body, dict) and "state" in body
                         else f"HTTP {got['status']}: {got['body'][:120]}" if got["status"] else got["body"][:120])
                if not states[key] or states[key][-1] != state:
                    states[key].append(state)
        waited = time.monotonic() - start
        done = all(state in FINAL for state in backend.values())
        invoiced_a = shop_rows(shop_db, "SELECT 1 FROM invoices WHERE order_id = 'order-A'") if done else []
        if done and (backend.get("A") == "FAILURE" or invoiced_a):
            break
        if waited > OUTCOME_WAIT or (waited > NO_PROGRESS and all(s in (None, "PENDING") for s in backend.values())):
            break
        time.sleep(0.05)
    return backend, errors, states


if __name__ == "__main__":
    WorkerDriver.main(main)
