"""Runs a learner's module-08 app and Celery worker for real, kills the worker mid-task, makes the
broker unavailable, and reports what happened, as JSON.

    python driver.py APP_DIR

It starts ``celery -A tasks worker -c 5`` on Celery's SQLite transport (no server) in the scratch
folder (polled every 0.1 s instead of kombu's 1 s, to wait less; Celery's retry jitter turned off,
so that the waits the learner configured are the waits measured) first, so that the worker boots
while this process imports tasks.py and app.py and starts app.py under uvicorn on 127.0.0.1. This
process reaches the broker with a 0.2 s SQLite timeout, the worker with SQLite's 5 s: an outage of
the broker fails a publish here within a second, and the worker rides it out.

Then, in order:

1. The outage: with the broker's file locked (``course.queues.broker_down``), order F is checked
   out; the lock is held until that POST has answered (at most OUTAGE_MAX seconds), and, unless it
   answered 503, at least OUTAGE_MIN seconds (an outbox's relay gets to meet the outage too). When it
   answered 503, F is checked out again once the broker is back, as a client following Retry-After
   would.
2. Orders G (a card that times out on every call), C (times out once) and A (a good card). A thread
   of the driver watches for A's charge and SIGKILLs the pool process that made it, mid-invoice.
   Once it is known who charged A (the worker, not this process), the cards that crash or hang the
   process are sent too: X (the provider's library kills the process on every try) and H (the
   provider never answers). Then B (declined), and D: once with a bad body, then twice at the same
   moment with a good one.
3. Order E, whose commit the driver makes slow (``shop.COMMIT_SECONDS``): a task sent before the
   commit looks for an order that is not there yet.
4. It reads the result backend until every task has its outcome (or OUTCOME_WAIT), asks the learner's
   status endpoint for A's and B's state each time it changes, and reads the broker's and the result
   backend's tables and the provider's records. It never judges: the checks read the report.

Every request's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error", "headers"); a checkout's adds
"task_id" (None when the answer holds none) and "first_status" (GET /tasks/{task_id} right after).

Report keys (each check names the ones it needs with ``require``):

    invoice_seconds   how long send_invoice() takes in this run
    time_limit        CHECKOUT_TIME_LIMIT in this run (seconds)
    max_tries         the contract's cap on tries and on calls to the provider for one checkout
    posts             {"A"|"B"|"C"|"G"|"X"|"H"|"E": checkout}: POST /orders/order-X/checkout (X and H only
                      when order A was not charged by the web server's process: they would kill or hang it)
    kill              {"charged", "within", "charge_pid", "driver_pid", "worker_pid", "pool_pids", "killed"}:
                      whether A was charged within that many seconds of its POST, the process that made the
                      charge, and whether it was killed
    states            {"A"|"B": [state, ...]}: the distinct states GET /tasks/{task_id} answered, in order,
                      asked each time the result backend's state changed ("HTTP 404: ..." when it did not
                      answer 200 with a "state")
    backend_states    {order: state}: each task's final state in the result backend, read by the driver
    backend_errors    {order: "Type: message"}: what a task in FAILURE raised, from the result backend
    finished_after    {order: seconds}: from the order's first call to the provider to the driver seeing
                      its task's outcome
    outcome_wait      seconds the driver waits for every task's outcome
    db                {order: {"calls", "charges", "invoices", "charge_pids", "lookups", "missed"}}: the
                      provider's records for each order (calls, charges and the processes that made them,
                      invoices) and the tasks' lookups of the order (those that found nothing: "missed")
    retry_waits       {"G": [seconds, ...]}: the wait each retry of order G's task was scheduled for (its
                      message's eta minus the time of the call that failed), read from the broker
    together          {"refused", "answers": [checkout, checkout], "states": [state, state], "db": {...}}: order D
                      checked out with "amount_cents": -5, then with a good body twice at the same moment
    outage            {"during", "held", "answered_while_down", "retry", "sent_after", "sent_wait", "state",
                      "error", "db", "driver_pid"}: order F, checked out while the broker was down (held: seconds
                      the lock was held; whether the POST had answered by then), the retry (None when the first
                      answer was not a 503), how many seconds after the broker was back a message for order F was
                      on it (None: not within sent_wait s, before any other request was sent), its task's final
                      state and what it raised, and F's records
    slow_commit       seconds order E's commit took
    cards             {"broker": [card, ...], "backend": [card, ...], "messages", "results"}: the test cards
                      found in any message the broker holds (kombu keeps delivered ones) and in any row of the
                      result backend, and how many of each were read
    server_errors     the exceptions the app raised, with the app's line
    stops             the serving stage's stop (SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
import uuid

from course.grading.checking import Driver, DriverError
from course.queue_lesson import rows

INVOICE = 0.6        # seconds send_invoice() takes: the slow part of the work
POLL = 0.1           # seconds between the worker's polls of the SQLite broker (kombu's default: 1 s)
TIME_LIMIT = 2.5     # CHECKOUT_TIME_LIMIT: above a good checkout's 0.7 s and a killed one's redelivery
MAX_TRIES = 3        # the contract: at most 3 tries of a checkout, at most 3 calls to the provider
COMMIT_SECONDS = 1.0  # order E's commit
OUTAGE_MIN, OUTAGE_MAX = 1.0, 4.0  # seconds the broker stays down for order F
SENT_WAIT = 2.0      # seconds, once the broker is back, for order F's task to be on it (before any other request)
CARDS = {"A": "4242424242424242", "B": "4000000000000002", "C": "4000000000000119", "G": "4000000000000101",
         "X": "4000000000000341", "H": "4000000000000259"}
GOOD = CARDS["A"]
FINAL = ("SUCCESS", "FAILURE")
CHARGE_WAIT = 6.0    # seconds for order A's charge to appear
OUTCOME_WAIT = 12.0  # seconds for every task to reach an outcome
NO_PROGRESS = 5.0    # ...but stop sooner when no task has even left PENDING by then: no worker is
                     # running them (the reference answer's tasks start within about 0.2 s)
WORKER_HINT = "run `celery -A tasks worker -l info` in your exercise folder and read its first error."


def records(provider_db: str, order: str) -> dict:
    """The provider's records of one order, and the tasks' lookups of it."""
    oid = f"order-{order}"
    calls = [t for (t,) in rows(provider_db, "SELECT at FROM gateway_calls WHERE order_id = ? ORDER BY at", oid)]
    pids = [pid for (pid,) in rows(provider_db, "SELECT pid FROM charges WHERE order_id = ? ORDER BY id", oid)]
    found = [f for (f,) in rows(provider_db, "SELECT found FROM lookups WHERE order_id = ?", oid)]
    return {"calls": len(calls), "charges": len(pids), "charge_pids": pids,
            "invoices": len(rows(provider_db, "SELECT 1 FROM invoices WHERE order_id = ?", oid)),
            "lookups": len(found), "missed": found.count(0), "call_times": calls}


def public(record: dict) -> dict:
    """An order's records as the report shows them (the call times stay in the driver)."""
    return {k: v for k, v in record.items() if k != "call_times"}


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
    from course.queues import Broker, declare_sqlite_queue, start_worker

    provider_db = str(d.scratch / "provider.db")
    broker_url = f"sqla+sqlite:///{d.scratch / 'broker.db'}"
    env = {"BROKER_URL": broker_url, "RESULT_BACKEND": f"db+sqlite:///{d.scratch / 'results.db'}",
           "TASK_QUEUE": f"checks-{uuid.uuid4().hex[:8]}", "SHOP_DB": str(d.scratch / "shop.db"),
           "PROVIDER_DB": provider_db, "INVOICE_SECONDS": str(INVOICE), "CHECKOUT_TIME_LIMIT": str(TIME_LIMIT)}
    # This process gives up on a locked broker after 0.2 s (a URL of its own: kombu keeps one engine per URL).
    os.environ.update({**env, "BROKER_URL": broker_url + "?timeout=0.2"})
    d.report.update(invoice_seconds=INVOICE, outcome_wait=OUTCOME_WAIT, time_limit=TIME_LIMIT, max_tries=MAX_TRIES)
    if not (d.target / "tasks.py").is_file():
        raise DriverError(f"there is no tasks.py in {d.target}", hint="the Celery app and the task live in tasks.py.")
    # First the worker (it takes a second or two to boot), then, while it boots, the app: its import and startup.
    worker = d.worker = start_worker("tasks", app_dir=d.target, env=env, concurrency=5, sqlite_poll_interval=POLL,
                                     retry_jitter=False)
    tasks = d.import_stage("tasks.py", needs="celery_app")
    module = d.import_stage("app.py")
    shop = sys.modules.get("shop")
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
            declare_sqlite_queue(os.environ["BROKER_URL"], env["TASK_QUEUE"])
            tasks.celery_app.backend  # noqa: B018 - created on first use
        broker = Broker("SQLite", broker_url, env["TASK_QUEUE"], env["RESULT_BACKEND"])
        exercise(d, svc, tasks, shop, worker, broker, provider_db)
        d.report["server_errors"] = svc.errors_since(mark)


def checkout(svc, order: str, body: dict) -> dict:
    """POST the checkout, and GET its status at once (the first state a client can see)."""
    answer = with_task_id(svc.send_sync("POST", f"/orders/order-{order}/checkout", json=body))
    answer["first_status"] = svc.send_sync("GET", f"/tasks/{answer['task_id']}", timeout=5) if answer["task_id"] else None
    return answer


def card(name: str) -> dict:
    return {"amount_cents": 1250, "card": CARDS.get(name, GOOD)}


def outage(svc, broker, provider_db: str) -> dict:
    """Order F while the broker is down; again after it is back if the first answer was a 503."""
    from course.queues import broker_down

    sent: dict = {}
    poster = threading.Thread(target=lambda: sent.update(answer=checkout(svc, "F", card("F"))), daemon=True,
                              name="checks-outage")
    with broker_down(broker):
        start = time.monotonic()
        poster.start()
        poster.join(OUTAGE_MAX)
        if (sent.get("answer") or {}).get("status") != 503:  # a task kept for later: its sender must meet the outage
            time.sleep(max(0.0, OUTAGE_MIN - (time.monotonic() - start)))
        held = round(time.monotonic() - start, 2)
        answered_while_down = not poster.is_alive()
    back = time.monotonic()
    poster.join(CHARGE_WAIT)  # an app still trying when the broker came back: its answer comes now
    during = sent.get("answer") or {"request": "POST /orders/order-F/checkout", "status": None,
                                    "body": "no answer", "json": None, "seconds": held, "task_id": None}
    retry = checkout(svc, "F", card("F")) if during["status"] == 503 else None
    # Before any other request: a task kept for later must go out by itself once the broker is back.
    sent_after = None
    while time.monotonic() - back < SENT_WAIT:
        if any("order-F" in m["text"] for m in messages(broker)):
            sent_after = round(time.monotonic() - back, 2)
            break
        time.sleep(0.05)
    return {"during": during, "held": held, "answered_while_down": answered_while_down, "retry": retry,
            "sent_after": sent_after, "sent_wait": SENT_WAIT, "driver_pid": os.getpid()}


def kill_charging_process(worker, provider_db: str) -> dict:
    """Wait until order A is charged, then SIGKILL the process that charged it (if it is a pool process)."""
    import psutil

    kill = {"driver_pid": os.getpid(), "worker_pid": worker.pid, "charged": False, "killed": False,
            "within": CHARGE_WAIT}
    deadline = time.monotonic() + CHARGE_WAIT
    while time.monotonic() < deadline:
        found = rows(provider_db, "SELECT pid FROM charges WHERE order_id = 'order-A' ORDER BY id")
        if found:
            kill.update(charged=True, charge_pid=found[0][0])
            break
        time.sleep(0.02)
    kill["pool_pids"] = [p.pid for p in worker.pool_children()]
    if kill["charged"] and kill["charge_pid"] in kill["pool_pids"]:
        with contextlib.suppress(psutil.NoSuchProcess, RuntimeError):
            worker.kill_pool_child(kill["charge_pid"])
            kill["killed"] = True
    return kill


def exercise(d: Driver, svc, tasks, shop, worker, broker, provider_db: str) -> None:
    good = card("A")
    watched: dict = {}
    charged = threading.Event()

    def watch() -> None:
        try:
            watched["kill"] = kill_charging_process(worker, provider_db)
        except Exception as exc:  # noqa: BLE001 - raised again in the "kill" stage
            watched["error"] = exc
        finally:
            charged.set()  # after the report is in `watched`: the requests read it

    with d.stage("outage", limit=OUTAGE_MAX + CHARGE_WAIT + 15,
                 doing="POST /orders/order-F/checkout while the broker is down, then again once it is back"):
        out = outage(svc, broker, provider_db)
    # It watches for A's charge while the orders are sent, so that A is killed mid-invoice however slowly they go.
    killer = threading.Thread(target=watch, daemon=True, name="checks-killer")
    killer.start()
    with d.stage("requests", limit=CHARGE_WAIT + 20, doing="POST /orders/{order_id}/checkout for eight orders"):
        # G and C first: their retries' waits run while A is charged, killed and delivered again.
        posts = {name: checkout(svc, name, card(name)) for name in ("G", "C", "A")}
        charged.wait(CHARGE_WAIT + 1)
        # The cards that kill or hang the process that charges them go only where that process is not this one.
        in_worker = "kill" in watched and watched["kill"].get("charge_pid") != os.getpid()
        for name in ("X", "H", "B") if in_worker else ("B",):
            posts[name] = checkout(svc, name, card(name))
        refused = checkout(svc, "D", {**good, "amount_cents": -5})
        at_once = svc.together(*(svc.send("POST", "/orders/order-D/checkout", json=good) for _ in range(2)))
        twice = [with_task_id(a) for a in asyncio.run(at_once)]
    with d.stage("kill", limit=CHARGE_WAIT + 5, doing="waiting for order A's charge, then killing the process running it"):
        killer.join()
        if "error" in watched:
            raise watched["error"]
        d.report["kill"] = watched["kill"]
    with d.stage("slow commit", limit=COMMIT_SECONDS + 15, doing="POST /orders/order-E/checkout with a slow commit"):
        if shop is not None:
            shop.COMMIT_SECONDS = COMMIT_SECONDS
        try:
            posts["E"] = checkout(svc, "E", good)
        finally:
            if shop is not None:
                shop.COMMIT_SECONDS = 0.0
    d.report["posts"] = posts
    with d.stage("outcomes", limit=OUTCOME_WAIT + 5, doing="reading each task's outcome, and GET /tasks/{task_id}"):
        final_f = out["retry"] or out["during"]
        sent = {**posts, "D1": twice[0], "D2": twice[1], "F": final_f}
        backend, errors, states, seen = outcomes(svc, tasks, {k: a["task_id"] for k, a in sent.items() if a["task_id"]},
                                                 provider_db)
    db = {name: records(provider_db, name) for name in (*posts, "D", "F")}
    d.report.update(
        states=states, backend_states={n: backend.get(n) for n in (*posts, "F")},
        backend_errors={n: errors[n] for n in (*posts, "F") if n in errors},
        finished_after={n: round(seen[n] - db[n]["call_times"][0], 2) for n in seen if db.get(n, {}).get("call_times")},
        db={n: public(r) for n, r in db.items()},
        retry_waits={"G": retry_waits(broker, posts.get("G", {}).get("task_id"), db["G"]["call_times"])},
        together={"refused": refused, "answers": twice, "states": [backend.get("D1"), backend.get("D2")],
                  "db": public(db["D"])},
        outage={**out, "state": backend.get("F"), "error": errors.get("F"), "db": public(db["F"])},
        slow_commit=COMMIT_SECONDS,
        cards=cards_stored(broker, tasks))


def outcomes(svc, tasks, ids: dict, provider_db: str) -> tuple[dict, dict, dict, dict]:
    """Read each task's state in the result backend until all have an outcome (and A its invoice, unless it
    failed); each time A's or B's state changes, ask the app's status endpoint too. Also: when (time.time())
    each task was first seen with its outcome."""
    from celery.result import AsyncResult

    backend: dict[str, str | None] = {key: None for key in ids}
    errors: dict[str, str] = {}
    states: dict[str, list[str]] = {"A": [], "B": []}
    seen: dict[str, float] = {}
    asked: dict[str, str | None] = {}
    start = time.monotonic()
    while True:
        for key, task_id in ids.items():
            with contextlib.suppress(Exception):
                result = AsyncResult(task_id, app=tasks.celery_app)
                backend[key] = result.state
                if result.state in FINAL:
                    seen.setdefault(key, time.time())
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
        invoiced_a = rows(provider_db, "SELECT 1 FROM invoices WHERE order_id = 'order-A'") if done else []
        if done and (backend.get("A") == "FAILURE" or invoiced_a):
            break
        if waited > OUTCOME_WAIT or (waited > NO_PROGRESS and all(s in (None, "PENDING") for s in backend.values())):
            break
        time.sleep(0.05)
    return backend, errors, states, seen


def messages(broker) -> list[dict]:
    """Every message the SQLite broker holds (kombu keeps delivered ones, invisible): its headers and its
    decoded body as text."""
    found = []
    for (payload,) in rows(broker.url.split("///", 1)[1], "SELECT payload FROM kombu_message ORDER BY id"):
        with contextlib.suppress(Exception):
            message = json.loads(payload)
            body = base64.b64decode(message.get("body", "")).decode("utf-8", "replace")
            found.append({"headers": message.get("headers", {}), "text": payload + body})
    return found


def retry_waits(broker, task_id: str | None, call_times: list[float]) -> list[float]:
    """For each retry of the task: the wait its message was scheduled for (eta), from the call that failed."""
    if not task_id:
        return []
    waits = []
    for m in messages(broker):
        headers = m["headers"]
        retries = headers.get("retries") or 0
        if headers.get("id") != task_id or not retries or retries > len(call_times):
            continue
        eta = headers.get("eta")
        at = dt.datetime.fromisoformat(eta).timestamp() if eta else call_times[retries - 1]
        waits.append((retries, round(max(0.0, at - call_times[retries - 1]), 2)))
    return [w for _, w in sorted(dict(waits).items())]


def cards_stored(broker, tasks) -> dict:
    """The test cards found in the broker's messages and in the result backend's rows."""
    held = messages(broker)
    result_db = os.environ.get("RESULT_BACKEND", "").split("///", 1)[-1]
    stored = [repr(r) for table in ("celery_taskmeta", "celery_tasksetmeta")
              for r in rows(result_db, f"SELECT * FROM {table}")]
    return {"broker": [c for c in CARDS.values() if any(c in m["text"] for m in held)],
            "backend": [c for c in CARDS.values() if any(c in r for r in stored)],
            "messages": len(held), "results": len(stored)}


if __name__ == "__main__":
    WorkerDriver.main(main)
