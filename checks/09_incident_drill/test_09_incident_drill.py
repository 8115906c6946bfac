"""Checks for exercise 09: the capstone incident drill.

The learner's service runs once, in a subprocess, under a real uvicorn server, beside fakes of the
partners it calls (driver.py), and the incident is replayed: each test below reads one part of
what happened and names one expectation. The TODOs are the incident's symptoms; each hint names
the module that teaches the cause.
"""

from __future__ import annotations

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "09_incident_drill"
WHAT = "importing app.py, serving it beside its partners and replaying the incident"
DRIVER_TIMEOUT = 90

FIELDS = ("email", "phone", "address", "note")


def statuses(answers: list[dict]) -> list:
    return [a["status"] for a in answers]


def test_service_runs(report: dict) -> None:
    """The service starts and answers its routes"""
    basics = require(report, "basics")
    for key, called, status in (("member", "GET /members/3", 200), ("boxes", "GET /boxes", 200),
                                ("slots", "GET /delivery-slots", 200), ("order_page", "GET /orders/{id}", 200),
                                ("statement", "GET /members/3/statement", 200)):
        got = basics[key]
        expect(got["status"] == status, called=called, expected=f"{status}", got=answer(got),
               hint="read the server's error first; README.md lists what each route answers.")
    member = basics["member"]["json"] or {}
    expect(member.get("id") == 3 and "credit_cents" in member and all(f in member for f in FIELDS),
           called="GET /members/3", expected="the member: id, name, email, phone, address, note, credit_cents",
           got=basics["member"]["body"], hint="keep the response models as the exercise has them.")
    expect(basics["order"]["id"] is not None, called='POST /orders {"member_id": 3, "box": "small"}',
           expected="201 with the new order's id", got=str(basics["order"]),
           hint="placing an order must keep working as it did.")


def test_bad_input_is_a_4xx(report: dict) -> None:
    """Bad input gets a 4xx that says why, never a 500"""
    bad = require(report, "bad_input")
    wrong = [a for a in bad if a["status"] is None or not 400 <= a["status"] < 500]
    expect(not wrong, called="an unknown member, an unknown order, NaN as a member id, an unknown box, an "
                             "unknown field in a PATCH, a picture as a statement",
           expected="a 4xx for each (404, 422, 415)", got="\n".join(f"{a['request']}: {answer(a)}" for a in wrong),
           hint="validation belongs in the models and the routes' parameters; a 500 is a bug report.")


def test_order_page_under_load(report: dict) -> None:
    """20 members looking at their orders at once all get their page"""
    burst, settings = require(report, "order_burst", "settings")
    errors = "; ".join(f"{text} x{n}" for text, n in burst["server_errors"].items()) or "nothing"
    expect(burst["ok"] == burst["n"],
           called=f"{burst['n']} GET /orders/{{id}} at once (the courier takes {settings['tracking']} s to track "
                  f"each; the database gives the service {settings['pool']})",
           expected=f"{burst['n']} x 200",
           got=f"statuses {burst['statuses']}, the slowest in {burst['slowest']:.2f} s; the service raised: {errors}",
           hint="read the error the service raised: what does each request hold while it waits for the "
                "courier? (`course hint 09 1`)", todo=1)


def test_no_connection_held_during_partner_calls(report: dict) -> None:
    """No request holds a database connection while it waits for a partner"""
    holding = require(report, "holding")
    held = {path: calls for path, calls in holding.items() if calls[1]}
    expect(holding.get("courier/tracking", [0])[0] > 0 and not held,
           called="the whole run, watching which task holds a pooled connection whenever the service calls the "
                  "courier, the farm or the mail service",
           expected="0 partner calls made while the caller holds a database connection",
           got=("; ".join(f"{path}: {n[1]} of {n[0]} calls" for path, n in held.items()) if held else
                "the courier was never asked to track an order (GET /orders/{id} must still track it)"),
           hint="a session keeps its connection until it closes or its transaction ends, also while the "
                "request awaits something else.", todo=1)


def test_one_client_for_the_partners(report: dict) -> None:
    """The service reuses its connections to the partners instead of opening one per request"""
    slots, settings = require(report, "slots", "settings")
    n = settings["slots_calls"]
    expect(slots["answers"] == [200] * n and slots["connections"] <= 2,
           called=f"GET /delivery-slots {n} times, one after another",
           expected=f"{n} x 200, over at most 2 new connections to the courier",
           got=f"statuses {slots['answers']}; the partners accepted {slots['connections']} new connection(s); "
               f"the service built {slots['clients']} httpx client(s) meanwhile",
           hint="a client keeps a pool of connections: one built per request opens a connection per request "
                "(and who closes it?).", todo=2)


def test_everything_closed_on_shutdown(report: dict) -> None:
    """After SIGTERM no HTTP client, partner connection or database connection is left open"""
    shut = require(report, "shutdown")
    expect(shut["clients_open"] == 0 and shut["partner_connections"] == 0 and shut["db_connections"] == 0,
           called="stopping the service (SIGTERM: the lifespan's shutdown runs)",
           expected="0 httpx clients never closed, 0 connections to the partners, 0 database connections",
           got=f"{shut['clients_open']} client(s) never closed, {shut['partner_connections']} connection(s) to the "
               f"partners still established, {shut['db_connections']} database connection(s) open",
           hint="whatever the service opens, the lifespan closes after its yield.", todo=2)


def test_no_task_left_after_shutdown(report: dict) -> None:
    """What the service starts in its lifespan is stopped by its shutdown"""
    shut = require(report, "shutdown")
    expect(not shut["tasks"], called="stopping the service (SIGTERM: the lifespan's shutdown runs)",
           expected="no asyncio task of the service still running once its lifespan's shutdown is over",
           got=f"still running: {', '.join(shut['tasks'])}",
           hint="a task the lifespan starts is cancelled, then awaited, after the yield: otherwise the closing "
                "loop kills it mid-job, after the engine it uses was disposed.", todo=7)


def _unchanged(before: dict, after: dict, *, but: tuple[str, ...]) -> list[str]:
    return [f"{f}: {before.get(f)!r} -> {after.get(f)!r}" for f in FIELDS
            if f not in but and before.get(f) != after.get(f)]


def test_one_field_patch_keeps_the_others(report: dict) -> None:
    """A PATCH that sends one field changes that field only"""
    p = require(report, "patch")
    before, after = p["before"]["json"] or {}, p["after_note"]["json"] or {}
    lost = _unchanged(before, after, but=("note",))
    expect(p["note"]["status"] == 200 and after.get("note") == "leave it at the back door" and not lost,
           called='PATCH /members/2 {"note": "leave it at the back door"}, then GET /members/2',
           expected="200; the note changed, email, phone and address as they were",
           got=f"{answer(p['note'])}; then: " + ("; ".join(lost) or f"note {after.get('note')!r}"),
           hint="which of the update model's fields reach the database: the ones the member sent, or all of "
                "them with their defaults?", todo=3)


def test_null_clears_a_field(report: dict) -> None:
    """A field sent as null is cleared, and only that field"""
    p = require(report, "patch")
    before, after = p["after_note"]["json"] or {}, p["after_clear"]["json"] or {}
    lost = _unchanged(before, after, but=("phone",))
    expect(p["cleared"]["status"] == 200 and after.get("phone") is None and not lost,
           called='PATCH /members/2 {"phone": null}, then GET /members/2',
           expected="200; phone null (a member may remove it), the other fields as they were",
           got=f"{answer(p['cleared'])}; then: phone {after.get('phone')!r}" + (f"; {'; '.join(lost)}" if lost else ""),
           hint="sent as null is not the same as not sent: one clears a field, the other leaves it alone.", todo=3)


def test_two_patches_at_once(report: dict) -> None:
    """Two one-field PATCHes of one member at the same moment both take effect"""
    p = require(report, "patch")
    first, second = p["together"]
    after = p["after_together"]["json"] or {}
    expect(first["status"] == 200 and second["status"] == 200 and after.get("note") == "ring twice"
           and after.get("address") == "9 Mill Street, Leeds LS2" and after.get("email") and after.get("phone"),
           called='PATCH /members/4 {"note": "ring twice"} and PATCH /members/4 {"address": "9 Mill Street, Leeds '
                  'LS2"}, sent at once; then GET /members/4',
           expected="200 for both; the note and the address both set, email and phone kept",
           got=f"{answer(first)}\n{answer(second)}\nthen: {p['after_together']['body']}",
           hint="each PATCH must write only the field it carries, or one erases what the other wrote.", todo=3)


def test_one_charge_per_order(report: dict) -> None:
    """Pay clicked several times at once charges the order once"""
    click, settings = require(report, "double_click", "settings")
    codes = statuses(click["answers"])
    debits, spent = click["debits"], click["credit_before"] - click["credit_after"]
    n = settings["pay_clicks"]
    expect(codes.count(200) == 1 and all(c in (409, 402, 429) for c in codes if c != 200) and len(debits) == 1
           and spent == -sum(debits),
           called=f"POST /orders/{click['order']}/pay {n} times at once (a member's double click, and a retry)",
           expected="one 200 and 409 for the others; one debit in the ledger; the credit lowered once",
           got=f"statuses {codes}; ledger debits for the order {debits}; credit {click['credit_before']} -> "
               f"{click['credit_after']}",
           hint="the order was 'pending' when each request read it; is it still when each one writes? "
                "(a lock in Python holds in one worker only)", todo=4)


def test_credit_never_overspent(report: dict) -> None:
    """Orders paid at once never spend more credit than the member has"""
    race = require(report, "credit_race")
    codes = statuses(race["answers"])
    before, after = race["credit_before"], race["credit_after"]
    fits = 2  # 100.00 covers two family boxes with delivery (36.50 each), not three
    expect(codes.count(200) == fits and after == before - fits * 3650 and after >= 0,
           called=f"three family boxes of one member (credit {before / 100:.2f}) paid at once",
           expected=f"exactly {fits} paid (200), the third refused (402); credit {(before - fits * 3650) / 100:.2f}",
           got=f"statuses {codes}; credit {before / 100:.2f} -> {after / 100:.2f}",
           hint="the credit each request checked was read before the others wrote theirs.", todo=4)
    again = race["after_refusal"]
    expect(again["status"] == 200 and again["credit_after"] == after - 2250,
           called="then a small box of the same member (22.50 with delivery)", expected="200, the credit lowered by it",
           got=f"{answer(again)}; credit {again['credit_after'] / 100:.2f}",
           hint="a refused payment must leave nothing held: no lock, no session, no half-written row.", todo=4)


def test_box_list_does_not_block(report: dict) -> None:
    """While the box list waits for the farm, the service keeps answering others"""
    lag, settings = require(report, "boxes_lag", "settings")
    n = len(lag["answers"])
    expect(lag["answers"] == [200] * n and lag["max_lag"] < settings["max_lag"],
           called=f"GET /boxes {n} times at once (the farm takes {settings['farm']} s), with GET /health, "
                  "watching the service's event loop",
           expected=f"{n} x 200; the loop never late by {settings['max_lag']} s or more",
           got=f"statuses {lag['answers']}; the loop was late by up to {lag['max_lag']:.2f} s "
               f"(GET /health took {lag['health']['seconds']:.2f} s)",
           hint="an async def route runs on the event loop: a call there that waits without await stops every "
                "request.", todo=5)


def test_statement_imported(report: dict) -> None:
    """A bank statement is imported: every transfer credited"""
    st = require(report, "statement")
    expect(st["status"] == 200 and st["credit_change"] == st["credited"],
           called=f"POST /imports/statements with a valid statement of {st['mib']} MiB ({st['rows']} transfers)",
           expected=f"200, and member 1's credit raised by their transfers ({st['credited'] / 100:.2f})",
           got=f"{answer(st)}; member 1's credit changed by {st['credit_change'] / 100:.2f}",
           hint="every line of a valid statement counts, the last batch too.")


def test_statement_in_constant_memory(report: dict) -> None:
    """Importing a statement takes a few MiB of memory, not the file's size"""
    st, settings = require(report, "statement", "settings")
    limit = st["mib"] * settings["growth_share"]
    expect(st["status"] == 200 and st["growth_mib"] < limit,
           called=f"POST /imports/statements with {st['mib']} MiB, measuring the process's peak memory (VmHWM)",
           expected=f"200, and the peak grows by less than {limit:.0f} MiB",
           got=f"{answer(st)}; the peak grew by {st['growth_mib']:.0f} MiB",
           hint="the upload is already in a file on disk when the route runs: how much of it do you hold?", todo=6)


def test_bad_statement_refused_whole(report: dict) -> None:
    """A statement with a bad line is refused whole (422 naming the line), and the next one imports"""
    bad, after = require(report, "bad_statement", "after_bad")
    expect(bad["status"] == 422 and f"line {bad['line']}" in bad["body"] and bad["credit_change"] == 0,
           called=f"POST /imports/statements with an amount of 12.50 on line {bad['line']}",
           expected=f"422 naming line {bad['line']}; no transfer of it credited",
           got=f"{answer(bad)}; member 7's credit changed by {bad['credit_change'] / 100:.2f}",
           hint="one transaction for the whole statement; a bad line answers 422 with its number.")
    expect(after["status"] == 200 and after["credit_change"] == after["credited"],
           called="then a small valid statement", expected="200, its transfers credited",
           got=f"{answer(after)}; member 7's credit changed by {after['credit_change'] / 100:.2f} "
               f"(expected {after['credited'] / 100:.2f})",
           hint="a refused import must leave nothing behind: no transaction open, no rows.")


def test_paid_box_booked_when_receipt_fails(report: dict) -> None:
    """A paid box is booked with the courier even when its receipt cannot be sent"""
    paid, bookings, receipts = require(report, "after_payment", "bookings", "receipts")
    codes = {label: a["status"] for label, a in paid["paid"].items()}
    wanted = ("no_email", "mail_refused", "plain")
    raised = "; ".join(f"{label}: {paid['paid'][label]['server_error']}" for label in wanted
                       if paid["paid"][label]["server_error"])
    expect(all(codes[label] == 200 for label in wanted) and all(bookings[label] == 1 for label in wanted)
           and receipts["plain"] == 1,
           called="paying three boxes: a member with no email, one whose address the mail service refuses, "
                  "and one with a good address",
           expected="200 each; each box booked with the courier once; the third member's receipt sent",
           got=f"statuses {codes}; bookings {dict((k, bookings[k]) for k in wanted)}; receipts sent to the third "
               f"member: {receipts['plain']}" + (f"; after answering, the service raised: {raised}" if raised else ""),
           hint="what runs after the response, and what happens to the work queued after a step that raises? "
                "The member already has their 200.", todo=7)


def test_booking_survives_a_courier_refusal(report: dict) -> None:
    """A booking the courier refuses once (503) is made when it answers again, exactly once"""
    paid, bookings, settings = require(report, "after_payment", "bookings", "settings")
    got = paid["paid"]["courier_refused_once"]
    expect(got["status"] == 200 and bookings["courier_refused_once"] == 1,
           called="paying a box whose first booking attempt the courier answers with a 503 (it was deploying)",
           expected=f"200; the box booked once, within {settings['book_within']:g} s",
           got=f"{answer(got)}; bookings made: {bookings['courier_refused_once']}"
               + ("" if paid["booked_in_time"] else f" (the checks waited {paid['seconds']:g} s)"),
           hint="work that must happen needs to be written down where it survives a failed attempt (and a "
                "crash), and tried again; tried again, it must not book twice.", todo=7)


def test_nothing_left_running(report: dict) -> None:
    """The service stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
