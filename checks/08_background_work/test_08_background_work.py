"""Checks for exercise 08: background work with Celery.

The learner's app and a real Celery worker run once, in a subprocess (driver.py): one order is checked
out while the broker is down, then orders with each test card (the pool process running order A is
SIGKILLed mid-task; one card kills the process on every try, one hangs, one times out on every call),
one order with a bad body and then twice at once, and one whose commit is slow. Each test below reads
one part of what happened and names one expectation.
"""

from __future__ import annotations

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "08_background_work"
WHAT = "starting a Celery worker and your app, and checking out orders"
DRIVER_TIMEOUT = 60

STATES = ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE")


def final_state(report: dict, name: str) -> str:
    """The task's final state in the result backend, and what it raised."""
    state, error = report.get("backend_states", {}).get(name), report.get("backend_errors", {}).get(name)
    return f"{state} ({error})" if error else str(state)


def test_checkout_accepted(report: dict) -> None:
    """POST /orders/{order_id}/checkout answers 202 with a task_id"""
    posts = require(report, "posts")
    bad = {name: answer(p) for name, p in posts.items() if p["status"] != 202 or not p["task_id"]}
    expect(not bad, called=f"{posts['A']['request']} (and the other orders, with the other test cards)",
           expected='202 Accepted with a JSON body holding "task_id", for every order (even a declined card: '
                    "the outcome comes later)",
           got="; ".join(f"order-{n}: {t}" for n, t in bad.items()),
           hint="the endpoint saves the order, sends the task and returns its id; status_code=202.", todo=6)


def test_fast_response(report: dict) -> None:
    """The client gets its answer without waiting for the work"""
    posts, invoice = require(report, "posts", "invoice_seconds")
    a = posts["A"]
    limit = 0.8 * invoice  # the work itself takes longer than the invoice; a busy machine gets the rest
    expect(a["status"] is not None and a["seconds"] < limit,
           called="POST /orders/order-A/checkout with a good card, timed",
           expected=f"an answer before the {invoice} s the invoice alone takes (below {limit:.2f} s)",
           got=f"{a['seconds']:.2f} s, then {answer(a)[:120]}",
           hint="the request should only hand the work over; the charge and the invoice happen elsewhere.", todo=6)


def test_work_runs_in_worker(report: dict) -> None:
    """The charge is made by the Celery worker, not by the web server's process"""
    kill = require(report, "kill")
    if not kill["charged"]:
        got = f"order-A was never charged within {kill['within']:g} s of its POST (no task reached the worker?)"
    elif kill["charge_pid"] == kill["driver_pid"]:
        got = f"order-A was charged by process {kill['charge_pid']}: the web server itself"
    else:
        got = f"order-A was charged by process {kill['charge_pid']}, not one of the worker's {kill['pool_pids']}"
    expect(kill["charged"] and kill["charge_pid"] in kill["pool_pids"],
           called="POST /orders/order-A/checkout, then watching who charges the card",
           expected=f"a pool process of the Celery worker (worker pid {kill['worker_pid']}) makes the charge",
           got=got,
           hint="work started with BackgroundTasks runs in the server's own process, after the response: a crash "
                "or a deploy of the server loses it. Send it to the broker instead.", todo=6)


def test_status_endpoint(report: dict) -> None:
    """GET /tasks/{task_id} answers 200 with Celery's state in every state, from the first one to the outcome"""
    states, posts = require(report, "states", "posts")
    a = states.get("A") or []
    outcome = report.get("backend_states", {}).get("A")
    expect(posts["A"]["task_id"], called="POST /orders/order-A/checkout", expected="a task_id to poll",
           got=answer(posts["A"]), hint="see the first expectation.", todo=6)
    first = {n: p["first_status"] for n, p in posts.items() if p.get("first_status")}
    wrong = {n: s for n, s in first.items()
             if s["status"] != 200 or not isinstance(s["json"], dict) or s["json"].get("state") not in STATES}
    expect(not wrong,
           called="GET /tasks/{task_id} right after each POST /orders/{order_id}/checkout, before the worker may "
                  "have started the task",
           expected=f'200 with JSON {{"task_id": ..., "state": ...}}, the state one of Celery\'s {", ".join(STATES)}: '
                    "a task just sent has no record yet and is PENDING, not unknown",
           got="; ".join(f"order-{n}: {answer(s)}" for n, s in wrong.items()),
           hint="AsyncResult(...).state is PENDING both for a task still in the queue and for an id Celery never saw: "
                "answer it as it is.", todo=7)
    expect(a and a[-1] in ("SUCCESS", "FAILURE") and a[-1] == outcome
           and all(not s.startswith(("HTTP", "no answer")) for s in a),
           called=f"GET /tasks/{posts['A']['task_id']} each time order-A's task changed state, until its outcome",
           expected='200 with JSON {"task_id": ..., "state": ...}: Celery\'s states, ending in the outcome the '
                    f"result backend records ({outcome})",
           got=f"states seen: {a or 'none'}" + (f"; the server raised {report['server_errors']}"
                                                if report.get("server_errors") else ""),
           hint="AsyncResult(task_id, app=celery_app).state reads the result backend.", todo=7)


def test_survives_worker_kill(report: dict) -> None:
    """A task whose worker process is killed mid-task is run again and completes"""
    kill, db = require(report, "kill", "db")
    expect(kill["killed"], called="waiting for order-A's charge in a worker process, to kill that process",
           expected="order-A charged by a worker process (then SIGKILLed during its invoice)",
           got="no worker process charged order-A, so there was nothing to kill (see the expectation above)",
           hint="the task must run in the worker.", todo=6)
    expect(db["A"]["invoices"] >= 1,
           called=f"SIGKILL of the pool process {kill['charge_pid']} while it sent order-A's invoice, "
                  f"then waiting up to {report['outcome_wait']:g} s",
           expected="the task delivered again to the worker and completed: order-A's invoice sent",
           got=f"no invoice for order-A; the task's state: {final_state(report, 'A')}",
           hint="by default Celery acknowledges a message when the task starts, so a task whose process dies is "
                "gone. Acknowledge late, and reject (requeue) when the worker is lost; if a lost process counts "
                "as a retry, the wait before that retry is the task's default_retry_delay.", todo=1)


def test_poison_message_capped(report: dict) -> None:
    """A task whose worker process dies on every try ends in FAILURE after at most 3 tries"""
    posts, db, tries = require(report, "posts", "db", "max_tries")
    expect("X" in posts, called="POST /orders/order-X/checkout with the card 4000000000000341",
           expected="sent once order-A's charge showed the work runs in the worker",
           got="not sent: order-A was charged by the web server's process, which this card would kill",
           hint="see the expectation on the worker's process.", todo=6)
    x = db["X"]
    expect(report["backend_states"].get("X") == "FAILURE" and 1 <= x["calls"] <= tries,
           called="POST /orders/order-X/checkout with the card on which the provider's library kills the process "
                  f"(SIGKILL), then waiting up to {report['outcome_wait']:g} s",
           expected=f"FAILURE after at most {tries} tries (calls to the provider), each one killing a pool process",
           got=f"{x['calls']} tries so far, the task's state: {final_state(report, 'X')}",
           hint="a task requeued each time its process dies is delivered for ever (a poison message): count a lost "
                "process as a retry, so that the retry limit ends it, or count the deliveries yourself.", todo=2)


def test_hung_task_stopped(report: dict) -> None:
    """A checkout that hangs is stopped by a time limit and ends in FAILURE"""
    posts, db, limit = require(report, "posts", "db", "time_limit")
    expect("H" in posts, called="POST /orders/order-H/checkout with the card 4000000000000259",
           expected="sent once order-A's charge showed the work runs in the worker",
           got="not sent: order-A was charged by the web server's process, which this card would hang",
           hint="see the expectation on the worker's process.", todo=6)
    took = report.get("finished_after", {}).get("H")
    expect(report["backend_states"].get("H") == "FAILURE" and took is not None and took <= limit + 2,
           called=f"POST /orders/order-H/checkout with the card whose provider never answers "
                  f"(CHECKOUT_TIME_LIMIT={limit:g})",
           expected=f"FAILURE within {limit + 2:g} s of the call to the provider (the time limit, and a margin)",
           got=f"the task's state: {final_state(report, 'H')}"
               + (f", {took:g} s after the call" if took is not None else f" after {report['outcome_wait']:g} s"),
           hint="a call that never returns holds a pool process for ever: Celery has a soft and a hard time limit, "
                "both off by default. And a task that catches the soft limit's exception must still fail.", todo=3)


def test_charged_once(report: dict) -> None:
    """A task that runs twice charges the card once"""
    kill, db = require(report, "kill", "db")
    a, c = db["A"], db["C"]
    expect(a["charges"] == 1 and c["charges"] <= 1,
           called="order-A's task, killed after the charge and run again",
           expected="exactly 1 charge for order-A in the provider's records, however often the task ran",
           got=f"{a['charges']} charge(s) for order-A ({a['calls']} calls to the provider); "
               f"{c['charges']} for order-C",
           hint="a redelivered task starts again from the top. Tell the payment provider which charge this is, "
                "so it can recognise the second attempt.", todo=5)


def test_failure_reported(report: dict) -> None:
    """A declined card ends in FAILURE, and the client can see it"""
    states, posts = require(report, "states", "posts")
    b = states.get("B") or []
    expect(b and b[-1] == "FAILURE",
           called=f"POST /orders/order-B/checkout with the declined card, then GET /tasks/{posts['B']['task_id']}",
           expected='the state "FAILURE" (the task raised CardDeclined)',
           got=f"states seen: {b or 'none'}; in the result backend: {final_state(report, 'B')}",
           hint="a task that catches its exception and returns normally is recorded as SUCCESS: let it raise.",
           todo=4)


def test_declined_not_retried(report: dict) -> None:
    """A declined card is not retried"""
    db = require(report, "db")
    calls = db["B"]["calls"]
    expect(calls == 1, called="POST /orders/order-B/checkout with the declined card",
           expected="1 call to the payment provider: a decline is permanent",
           got=f"{calls} calls for order-B",
           hint="retry only what can succeed later (GatewayTimeout), not every exception.", todo=4)


def test_transient_error_retried(report: dict) -> None:
    """A payment provider timeout is retried until it succeeds"""
    db = require(report, "db")
    c = db["C"]
    expect(c["calls"] >= 2 and c["charges"] == 1 and c["invoices"] >= 1,
           called="POST /orders/order-C/checkout with the card whose provider times out on the first call",
           expected="a second call to the provider, then 1 charge and the invoice (state SUCCESS)",
           got=f"{c['calls']} call(s), {c['charges']} charge(s), {c['invoices']} invoice(s); "
               f"the task's state: {final_state(report, 'C')}",
           hint="Celery can retry a task for you on the exceptions you name, waiting longer each time.", todo=4)


def test_retries_bounded_and_growing(report: dict) -> None:
    """Retries of a timeout are bounded, and each wait is longer than the one before"""
    db, waits, tries = require(report, "db", "retry_waits", "max_tries")
    g, w = db["G"], waits.get("G") or []
    expect(report["backend_states"].get("G") == "FAILURE" and 2 <= g["calls"] <= tries,
           called="POST /orders/order-G/checkout with the card whose provider times out on every call, then waiting "
                  f"up to {report['outcome_wait']:g} s",
           expected=f"at most {tries} calls to the provider, then FAILURE",
           got=f"{g['calls']} call(s) so far; the task's state: {final_state(report, 'G')}",
           hint="a provider that is down keeps timing out: retries need a limit (max_retries), and the task fails "
                "once it is reached.", todo=4)
    grows = len(w) >= 2 and w[0] >= 0.5 and all(later >= earlier + 0.5 for earlier, later in zip(w, w[1:]))
    expect(grows, called="the waits before order-G's retries, as the retry messages on the broker schedule them "
                         "(Celery's retry jitter is off in the checks' worker)",
           expected="a wait of at least 0.5 s before the first retry, and each wait at least 0.5 s longer than the "
                    "one before (1 s, 2 s, 4 s, ...)",
           got=f"waits of {', '.join(f'{x:g} s' for x in w) or 'nothing scheduled'}",
           hint="retrying at once, or every second, hammers a provider that is struggling: back off, exponentially.",
           todo=4)


def test_no_card_in_broker_or_backend(report: dict) -> None:
    """No card number in the broker's messages or in the result backend"""
    cards = require(report, "cards")
    found = sorted(set(cards["broker"]) | set(cards["backend"]))
    where = " and ".join(w for w in ("broker", "backend") if cards[w])
    expect(not found,
           called=f"reading every message the broker holds ({cards['messages']}: the SQLite transport keeps the "
                  f"delivered ones) and every row of the result backend ({cards['results']})",
           expected="no card number in either: the task gets the order's id and reads the rest from the shop",
           got=f"{len(found)} card number(s) in the {where}: {', '.join(found)}",
           hint="whatever a task's arguments hold is stored by the broker, shown in monitoring tools, and kept "
                "with extended results: pass the order's id, and let the task load the order.", todo=5)


def test_task_sent_after_commit(report: dict) -> None:
    """Every task finds its order: a task is sent only once its order is committed"""
    db, posts, seconds = require(report, "db", "posts", "slow_commit")
    missed = {n: r["missed"] for n, r in db.items() if r["missed"]}
    expect(not missed and db["E"]["lookups"] >= 1 and report["backend_states"].get("E") == "SUCCESS",
           called=f"{posts['E']['request']}, its commit made {seconds:g} s slow",
           expected="the worker finds order-E when its task starts (the task sent after the commit), and the task "
                    "succeeds",
           got=(f"the tasks looked for orders not committed yet: {', '.join(f'order-{n} ({k}x)' for n, k in missed.items())}"
                if missed else f"order-E's task: {final_state(report, 'E')}, {db['E']['lookups']} lookup(s)"),
           hint="a message sent inside the order's transaction can reach a worker before the commit, and the worker "
                "sees no order: send it after the commit (or write it in the same transaction and relay it).",
           todo=6)


def test_broker_outage(report: dict) -> None:
    """When the broker cannot be reached, the client gets a 503 (and its retry works) or the task is kept and sent later"""
    out = require(report, "outage")
    during, retry, db = out["during"], out["retry"], out["db"]
    pids = [p for p in db["charge_pids"] if p == out["driver_pid"]]
    expect(during["status"] in (202, 503) and out["answered_while_down"],
           called=f"{during['request']} while the broker could not be reached ({out['held']:g} s)",
           expected="an answer while the broker is down: 503 (the client tries again later) or 202 (the task is "
                    "kept and sent once the broker is back); never a 500, and no request held until the broker "
                    "comes back",
           got=f"{answer(during)}, after {during['seconds']:.2f} s"
               + ("" if out["answered_while_down"] else ", once the broker was back"),
           hint="when the broker is down, .delay() raises kombu.exceptions.OperationalError after Celery's own "
                "retries: the order is saved, the task is not; say so with a 503, or keep the task and send it "
                "later.", todo=6)
    expect(out["sent_after"] is not None or during["status"] != 202,
           called=f"{during['request']} answered {during['status']} while the broker was down; then nothing else "
                  f"for {out['sent_wait']:g} s",
           expected=f"order-F's task on the broker within {out['sent_wait']:g} s of its return, sent by itself",
           got="no message for order-F on the broker",
           hint="a 202 promises the work: keep the task (in the order's transaction) and let something that runs "
                "on its own (a relay thread started by the lifespan, a periodic task) send it.", todo=6)
    expect(not pids and db["charges"] == 1 and db["invoices"] >= 1 and out["state"] == "SUCCESS",
           called=f"{during['request']} while the broker was down"
                  + (f", then {retry['request']} once it was back ({answer(retry)[:60]})" if retry else ""),
           expected="order-F charged once, by the worker, once the broker is back: nothing lost, nothing done in the "
                    "web server's process",
           got=f"{db['charges']} charge(s)" + (" made by the web server's process" if pids else "")
               + f", {db['invoices']} invoice(s); the task's state: {out['state']}"
               + (f" ({out['error']})" if out.get("error") else ""),
           hint="a 202 promises the work: a task that was never sent, or work done in the request instead, breaks "
                "that promise. After a 503, the client's retry must go through.", todo=6)


def test_concurrent_checkouts(report: dict) -> None:
    """One order checked out twice at once is charged once; a valid checkout after a refused one succeeds"""
    together = require(report, "together")
    refused, answers, db, states = together["refused"], together["answers"], together["db"], together["states"]
    expect(refused["status"] == 422, called=refused["request"], expected="422: the amount must be positive",
           got=answer(refused), hint="keep the body's model (Checkout): FastAPI refuses a bad body before your "
                                     "code runs.", todo=6)
    expect(all(a["status"] == 202 and a["task_id"] for a in answers) and db["charges"] == 1
           and all(s == "SUCCESS" for s in states),
           called=" and ".join(a["request"] for a in answers) + ", sent at the same moment after the refused one",
           expected="202 with a task_id for both, both tasks ending in SUCCESS, and 1 charge for the order",
           got=" / ".join(answer(a) for a in answers)
               + f"\nthe tasks' states: {states}; {db['charges']} charge(s) ({db['calls']} calls to the provider)",
           hint="the same order may be checked out twice (a client that retries, a double click): the charge's "
                "idempotency key must name the order's charge, not one run of one task.", todo=5)


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
