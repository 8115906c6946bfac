"""Checks for exercise 05: from a Python function to an endpoint.

The learner's app runs once, in a subprocess, under a real uvicorn server with a real SQLite file
(driver.py); each test below reads one part of what happened and names one expectation.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from course.grading.checking import expect, nothing_left_running, require, run_driver

MODULE = "05_function_to_endpoint"
DRIVER = Path(__file__).with_name("driver.py")


@pytest.fixture(scope="module")
def report(target: Path) -> dict:
    return run_driver(DRIVER, target, timeout=60, what="importing app.py and serving it under uvicorn")


def answer(result: dict) -> str:
    """A request's result as the learner should read it: status and body, and for a 500 the
    exception the server raised, with the line of app.py."""
    text = f"{result['status']}: {result['body']}" if result["status"] is not None else result["body"]
    return text + (f"; the server raised {result['server_error']}" if result.get("server_error") else "")


def money(value) -> Decimal | None:
    """A JSON money value ("12.50" or 12.5) as a Decimal, or None if it is not a number."""
    try:
        return Decimal(str(value)) if not isinstance(value, bool) else None
    except (InvalidOperation, ValueError):
        return None


def ok(status) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def test_app_runs(report: dict) -> None:
    """app.py imports, starts, finds a user and takes a payment"""
    lookup, nobody, payment, cents = require(report, "lookup", "lookup_none", "payment", "payment_cents")
    users = lookup["json"]
    expect(lookup["status"] == 200 and isinstance(users, list) and len(users) == 1
           and users[0].get("email") == "ann@example.com" and money(users[0].get("balance")) == Decimal("100.00"),
           called="GET /users?email=ann@example.com",
           expected='200 with [{"id": 1, "name": "Ann", "email": "ann@example.com", "balance": "100.00"}]',
           got=answer(lookup), hint="the table is users (id, name, email, password_hash, balance_cents); "
                                    "balance is balance_cents / 100, as money.")
    expect(nobody["status"] == 200 and nobody["json"] == [], called="GET /users?email=nobody@example.com",
           expected="200 with []", got=answer(nobody), hint="a search that finds nothing is an empty list.")
    body = payment["json"] if isinstance(payment["json"], dict) else {}
    expect(ok(payment["status"]) and isinstance(body.get("transaction_id"), str) and body.get("user_id") == 1
           and money(body.get("amount")) == Decimal("12.50") and money(body.get("balance")) == Decimal("87.50"),
           called='POST /payments {"user_id": 1, "amount": 12.5, "card": {a valid card}} (balance 100.00)',
           expected='200 with {"transaction_id": "...", "user_id": 1, "amount": "12.50", "balance": "87.50"}',
           got=answer(payment), hint="keep the response fields of the README's contract.")
    expect(cents == 8750, called="reading user 1's balance_cents from the database after that payment",
           expected="8750", got=str(cents), hint="the payment must be saved (commit).")


def test_lookup_not_injectable(report: dict) -> None:
    """The email lookup is not an SQL injection"""
    injections = require(report, "injections")
    for r in injections:
        expect(r["status"] is not None and r["status"] < 500 and not r["leaked"],
               called=f"GET /users?email={r['payload']}",
               expected="200 with [] (no user has that email) or a 4xx; no user, no secret in the body",
               got=(f"{r['status']} with {', '.join(r['leaked'])} in the body" if r["leaked"] else answer(r)),
               hint="the client's string became part of the SQL. Send it as a bound parameter (or use the "
                    "ORM), so the database never reads it as SQL.", todo=2)


def test_bad_input_is_never_a_500(report: dict) -> None:
    """Bad input gets a 4xx, never a 500"""
    bad = require(report, "bad")
    crashed = [b for b in bad if b["status"] is None or b["status"] >= 500]
    expect(not crashed, called=f"{len(bad)} bad payments (NaN, a missing card, a user_id past 64 bits, ...)",
           expected="a 4xx (422 for invalid input) for every one",
           got=lambda: f"{len(crashed)} got a 500 or no answer:\n" + "\n".join(
               f"{b['name']}: {b['status']}" + (f", the server raised {b['server_error']}" if b["server_error"] else "")
               for b in crashed[:6]),
           hint="describe the body with Pydantic models so FastAPI validates it first; NaN is rejected by a "
                "Decimal field, but FastAPI's own 422 handler echoes the value and cannot write NaN as JSON.",
           todo=1)


def test_amount_must_be_positive_whole_cents(report: dict) -> None:
    """A zero, negative or sub-cent amount is refused and charges nothing"""
    bad = require(report, "bad")
    accepted = [b for b in bad if b["kind"] == "amount" and not (isinstance(b["status"], int) and 400 <= b["status"] < 500)]
    expect(not accepted, called="POST /payments for user 5 with amount 0, -5 and 0.001",
           expected="a 4xx (422) for each",
           got=lambda: "; ".join(f"{b['name']}: {b['status']} {b['body'][:120]}" for b in accepted),
           hint="a negative payment is a refund nobody asked for. Constrain the amount in the model "
                "(greater than 0, at most two decimal places).", todo=1)


def test_card_number_luhn_checked(report: dict) -> None:
    """A card number that fails the Luhn check is refused"""
    bad = require(report, "bad")
    accepted = [b for b in bad if b["kind"] == "luhn" and not (isinstance(b["status"], int) and 400 <= b["status"] < 500)]
    expect(not accepted, called="POST /payments with card numbers 4242424242424241 and 1234567812345678",
           expected="a 4xx (422) for each: their Luhn checksum is wrong",
           got=lambda: "; ".join(f"{b['name']}: {b['status']} {b['body'][:120]}" for b in accepted),
           hint="payments.luhn_valid(number) exists; call it from a field validator on the card number.", todo=1)


def test_bad_input_never_accepted(report: dict) -> None:
    """No malformed payment is accepted"""
    bad, cents = require(report, "bad", "bad_cents")
    accepted = [b for b in bad if ok(b["status"])]
    expect(not accepted and cents == 5000, called=f"{len(bad)} bad payments for user 5 (a card without cvv, cvv \"12\", "
                                "expiry \"13/99\", letters in the number, ...)",
           expected="none accepted (each a 4xx); user 5's balance unchanged",
           got=lambda: f"{len(accepted)} accepted: " + "; ".join(b["name"] for b in accepted[:8])
                       + f"; user 5's balance_cents is now {cents}",
           hint="a card is an object with number (13-19 digits), expiry (MM/YY) and cvv (3-4 digits); "
                "a dict accepts anything.", todo=1)


def test_money_is_exact(report: dict) -> None:
    """Money keeps every cent (no float arithmetic)"""
    money_results, cents = require(report, "money", "money_cents")
    failed = [m for m in money_results if not ok(m["status"])]
    expect(not failed, called="POST /payments: 0.10 three times from 20.00, and 0.29 from 1.00",
           expected="200 for each", got=lambda: "; ".join(f"{m['amount']}: {answer(m)}" for m in failed),
           hint="read the server's error.", todo=1)
    balances = [money((m["json"] or {}).get("balance")) for m in money_results]
    expect(cents == {"2": 1970, "3": 71} and balances == [Decimal("19.90"), Decimal("19.80"), Decimal("19.70"),
                                                          Decimal("0.71")],
           called="POST /payments: 0.10 three times from 20.00, and 0.29 from 1.00; then reading balance_cents",
           expected='balances "19.90", "19.80", "19.70" and "0.71"; 1970 and 71 cents in the database',
           got=f"balances {[str(b) for b in balances]}; {cents['2']} and {cents['3']} cents in the database",
           hint="20.0 - 0.1 in float holds 19.8999999999999985 (it prints as 19.9), and int(0.29 * 100) is 28. Money is a Decimal "
                "(or whole cents) from the request to the database.", todo=1)


def test_domain_errors_are_4xx(report: dict) -> None:
    """An unknown user is a 404, insufficient funds a 409; neither changes anything"""
    domain, cents = require(report, "domain", "domain_cents")
    unknown, over = domain["unknown_user"], domain["over_balance"]
    expect(unknown["status"] == 404, called="POST /payments for user 999 (nobody)", expected="404 with a detail",
           got=answer(unknown), hint="raise HTTPException(status_code=404, ...) when the user does not exist.", todo=3)
    expect(over["status"] in (400, 402, 409), called="POST /payments for 50.00 from user 4 (balance 5.00)",
           expected="409 (400 or 402 accepted) with a detail", got=answer(over),
           hint="payments.charge raises InsufficientFunds; an exception you do not handle is a 500. "
                "Turn it into an HTTPException.", todo=3)
    expect(cents == 500, called="reading user 4's balance_cents afterwards", expected="500 (unchanged)",
           got=str(cents), hint="a refused payment must not touch the balance.", todo=3)


def test_no_internal_fields_in_responses(report: dict) -> None:
    """No response carries a password hash or the card"""
    seen = require(report, "secrets_seen")
    expect(not seen, called="the lookups and payments above, reading every response body",
           expected="no password_hash, no card number, no cvv in any response",
           got=lambda: "; ".join(f"{s['request']}: {', '.join(s['found'])}" for s in seen[:4])
                       + (f" (and {len(seen) - 4} more)" if len(seen) > 4 else ""),
           hint="returning a row (or the request) sends every field of it. A response model says what "
                "leaves the server; the rest is dropped.", todo=4)


def test_database_wait_does_not_block_the_server(report: dict) -> None:
    """While a request waits for the database, the server still answers others"""
    loop = require(report, "event_loop")
    expect(loop["answered_while_locked"],
           called="locking the database, sending a payment and a lookup (they wait for the lock), then "
                  "GET /openapi.json (which needs no database)",
           expected="/openapi.json answered at once, while the lock is still held (up to 2 s)",
           got=f"answered only after the lock was released, {loop['probe_seconds']:.2f} s later: the event loop "
               f"was stuck in a database call (the waiting requests then got {loop['statuses']}"
               + (f"; the server raised {loop['server_errors']})" if loop["server_errors"] else ")"),
           hint="sqlite3 (and any blocking driver) called in an `async def` endpoint blocks the event loop. "
                "Use an async driver (SQLAlchemy with sqlite+aiosqlite), or make the endpoint a plain `def` "
                "so FastAPI runs it in its thread pool.", todo=5)


def test_nothing_left_running(report: dict) -> None:
    """Nothing your code started is still running after shutdown"""
    nothing_left_running(report)
