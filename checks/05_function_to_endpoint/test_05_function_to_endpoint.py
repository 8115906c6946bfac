"""Checks for exercise 05: from a Python function to an endpoint.

The learner's app runs once, in a subprocess, under a real uvicorn server with a real SQLite file
(driver.py); each test below reads one part of what happened and names one expectation.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "05_function_to_endpoint"
WHAT = "importing app.py and serving it under uvicorn"


def money(value) -> Decimal | None:
    """A JSON money value ("12.50" or 12.5) as a Decimal, or None if it is not a number."""
    try:
        return Decimal(str(value)) if not isinstance(value, bool) else None
    except (InvalidOperation, ValueError):
        return None


def ok(status) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def cents(amount) -> int:
    """An amount as sent (12.5) in cents (1250)."""
    return int(Decimal(str(amount)) * 100)


def shown(amount_cents: int) -> str:
    """Cents as the API writes money: 1250 -> "12.50"."""
    return str(Decimal(amount_cents).scaleb(-2))


def balance_of(result: dict) -> Decimal | None:
    """The "balance" of a payment's answer, or of the first user a lookup found."""
    body = result["json"]
    if isinstance(body, list):
        body = body[0] if body else None
    return money(body.get("balance")) if isinstance(body, dict) else None


def seeded_cents(report: dict, user_id) -> int:
    return report["seeded"][str(user_id)]["cents"]


def test_app_runs(report: dict) -> None:
    """app.py imports, starts, finds a user and takes a payment"""
    lookup, nobody, payment, stored, seeded = require(report, "lookup", "lookup_none", "payment", "payment_cents",
                                                      "seeded")
    user = seeded["1"]
    users = lookup["json"]
    expect(lookup["status"] == 200 and isinstance(users, list) and len(users) == 1
           and users[0].get("email") == user["email"] and balance_of(lookup) == money(shown(user["cents"])),
           called=lookup["request"],
           expected=f'200 with [{{"id": 1, "name": "{user["name"]}", "email": "{user["email"]}", '
                    f'"balance": "{shown(user["cents"])}"}}]',
           got=answer(lookup), hint="the table is users (id, name, email, password_hash, balance_cents); "
                                    "balance is balance_cents / 100, as money.")
    expect(nobody["status"] == 200 and nobody["json"] == [], called=nobody["request"],
           expected="200 with []", got=answer(nobody), hint="a search that finds nothing is an empty list.")
    sent = payment["sent"]
    before = seeded_cents(report, sent["user_id"])
    after = before - cents(sent["amount"])
    body = payment["json"] if isinstance(payment["json"], dict) else {}
    expect(ok(payment["status"]) and isinstance(body.get("transaction_id"), str)
           and body.get("user_id") == sent["user_id"] and money(body.get("amount")) == Decimal(str(sent["amount"]))
           and balance_of(payment) == money(shown(after)),
           called=f"{payment['request']} (balance {shown(before)})",
           expected=f'200 with {{"transaction_id": "...", "user_id": {sent["user_id"]}, '
                    f'"amount": "{shown(cents(sent["amount"]))}", "balance": "{shown(after)}"}}',
           got=answer(payment), hint="keep the response fields of the README's contract.")
    expect(stored == after,
           called=f"reading user {sent['user_id']}'s balance_cents from the database after that payment",
           expected=str(after), got=str(stored), hint="the payment must be saved (commit).")


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


def test_lookup_matches_only_that_email(report: dict) -> None:
    """An email with LIKE's wildcards (% and _) finds no one: the lookup matches only that exact email"""
    for r in require(report, "wildcards"):
        found = r["json"] if r["status"] == 200 and isinstance(r["json"], list) else []
        expect(r["status"] is not None and r["status"] < 500 and not found,
               called=f"GET /users?email={r['payload']}",
               expected="200 with [] (no user has that email) or a 4xx",
               got=answer(r) if not found else f"{r['status']} with {len(found)} user(s): " + ", ".join(
                   str(u.get("email")) if isinstance(u, dict) else str(u) for u in found[:4]),
               hint="`%` and `_` are wildcards for SQL's LIKE: data that means something to the query language "
                    "without any quote. A lookup that returns at most one user compares with `=`.", todo=2)


def test_payments_at_once_never_overdraw(report: dict) -> None:
    """Payments sent at once are accepted exactly as far as the balance covers them, and the balance is exact"""
    for key in ("burst", "burst_partial"):
        b = require(report, key)
        answers, user, amount = b["answers"], b["user"], b["amount"]
        before = seeded_cents(report, user)
        fit = min(len(answers), before // cents(amount))
        wanted = before - fit * cents(amount)
        accepted = [a for a in answers if ok(a["status"])]
        others = sorted(a["status"] for a in answers if not ok(a["status"]))
        crashed = [a for a in answers if not ok(a["status"]) and a["status"] not in (400, 402, 409)]
        expect(len(accepted) == fit and not crashed and b["cents"] == wanted,
               called=f"{len(answers)} x POST /payments for user {user}, {shown(cents(amount))} each, sent at the same "
                      f"moment to two workers (balance {shown(before)}; every payment read the balance before any "
                      "of them wrote)",
               expected=f"exactly {fit} accepted, {len(answers) - fit} refused (409, or 400/402), and "
                        f"{shown(wanted)} left ({wanted} cents)",
               got=f"{len(accepted)} accepted, then {others}; {shown(b['cents'])} left ({b['cents']} cents)"
                   + (f"; the customer was charged {shown(len(accepted) * cents(amount))} and debited "
                      f"{shown(before - b['cents'])}" if len(accepted) > fit else "")
                   + "".join(f"\n  {answer(a)}" for a in crashed[:3]),
               hint="reading the balance, checking it in Python and writing the new one lets every payment that "
                    "read before the first write through (a lock in Python holds in one worker only). Let the "
                    "database apply the rule where it writes: UPDATE ... SET balance_cents = balance_cents - :amount "
                    "WHERE id = :id AND balance_cents >= :amount, and no row changed means insufficient funds.",
               todo=5)
    drain = require(report, "drain")
    exact, cent = drain["answers"]
    expect(ok(exact["status"]) and refused(cent) and drain["cents"] == 0,
           called=f"{exact['request']} (exactly the balance, {shown(drain['cents_before'])}), then {cent['request']}",
           expected="200 for the first (the balance covers it exactly), a 4xx for the second, and 0.00 left",
           got=f"{answer(exact)}\nthen {answer(cent)}\n{shown(drain['cents'])} left",
           hint="a payment of exactly the balance fits: the rule is `amount <= balance` (payments.charge "
                "refuses only amount > balance); in SQL, balance_cents >= :amount.", todo=5)


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


def refused(b: dict) -> bool:
    return isinstance(b["status"], int) and 400 <= b["status"] < 500


def listed(items: list) -> str:
    return ", ".join(map(str, items[:-1])) + f" and {items[-1]}" if len(items) > 1 else "".join(map(str, items))


def test_amount_must_be_positive_whole_cents(report: dict) -> None:
    """A zero, negative or sub-cent amount is refused and charges nothing"""
    bad = [b for b in require(report, "bad") if b["kind"] == "amount"]
    accepted = [b for b in bad if not refused(b)]
    expect(not accepted, called=f"POST /payments for user {bad[0]['sent']['user_id']} with amount "
                                + listed([b["sent"]["amount"] for b in bad]),
           expected="a 4xx (422) for each",
           got=lambda: "; ".join(f"{b['name']}: {b['status']} {b['body'][:120]}" for b in accepted),
           hint="a negative payment is a refund nobody asked for. Constrain the amount in the model "
                "(greater than 0, at most two decimal places).", todo=1)


def test_amount_limits(report: dict) -> None:
    """An amount over 1 000 000 is refused; 1 000 000 itself is accepted"""
    limits = require(report, "limits")
    over, largest = limits["over"], limits["largest"]
    user = largest["sent"]["user_id"]
    before = seeded_cents(report, user)
    wanted = before - cents(largest["sent"]["amount"])
    expect(refused(over) and ok(largest["status"]) and limits["cents"] == wanted,
           called=f"{over['request']}, then {largest['request']} (balance {shown(before)})",
           expected=f"a 4xx (422) for the first, 200 for the second, and {shown(wanted)} left",
           got=f"{answer(over)}\nthen {answer(largest)}\n{shown(limits['cents'])} left",
           hint="the amount is at most 1 000 000: a bound in the model (le=...), checked before any balance is; "
                "the bound itself is allowed.", todo=1)


def test_card_number_luhn_checked(report: dict) -> None:
    """A card number that fails the Luhn check is refused"""
    bad = [b for b in require(report, "bad") if b["kind"] == "luhn"]
    accepted = [b for b in bad if not refused(b)]
    numbers = [b["sent"]["card"]["number"] for b in bad]
    expect(not accepted, called=f"POST /payments with card numbers {listed(numbers)}",
           expected="a 4xx (422) for each: their Luhn checksum is wrong",
           got=lambda: "; ".join(f"{b['name']}: {b['status']} {b['body'][:120]}" for b in accepted),
           hint="payments.luhn_valid(number) exists; call it from a field validator on the card number.", todo=1)


def test_bad_input_never_accepted(report: dict) -> None:
    """No malformed payment is accepted"""
    bad, stored = require(report, "bad", "bad_cents")
    user = bad[0]["sent"]["user_id"]
    accepted = [b for b in bad if ok(b["status"])]
    expect(not accepted and stored == seeded_cents(report, user),
           called=f"{len(bad)} bad payments for user {user} (a card without cvv, cvv \"12\", "
                  "expiry \"13/99\", letters in the number, ...)",
           expected=f"none accepted (each a 4xx); user {user}'s balance unchanged",
           got=lambda: f"{len(accepted)} accepted: " + "; ".join(b["name"] for b in accepted[:8])
                       + f"; user {user}'s balance_cents is now {stored}",
           hint="a card is an object with number (13-19 digits), expiry (MM/YY) and cvv (3-4 digits); "
                "a dict accepts anything.", todo=1)


def test_money_is_exact(report: dict) -> None:
    """Money keeps every cent (no float arithmetic)"""
    results, stored = require(report, "money", "money_cents")
    running = {user: seeded_cents(report, user) for user in stored}  # each user's balance, payment after payment
    wanted = []
    for m in results:
        user = str(m["sent"]["user_id"])
        running[user] -= cents(m["sent"]["amount"])
        wanted.append(shown(running[user]))
    plan = ", and ".join(
        " + ".join(shown(cents(m["sent"]["amount"])) for m in results if str(m["sent"]["user_id"]) == user)
        + f" from {shown(seeded_cents(report, user))}" for user in stored)
    failed = [m for m in results if not ok(m["status"])]
    expect(not failed, called=f"POST /payments: {plan}",
           expected="200 for each", got=lambda: "; ".join(f"{m['sent']['amount']}: {answer(m)}" for m in failed),
           hint="read the server's error.", todo=1)
    balances = [balance_of(m) for m in results]
    expect(stored == running and balances == [Decimal(w) for w in wanted],
           called=f"POST /payments: {plan}; then reading balance_cents",
           expected=f"balances {listed([f'{chr(34)}{w}{chr(34)}' for w in wanted])}; "
                    f"{listed(list(running.values()))} cents in the database",
           got=f"balances {[str(b) for b in balances]}; {listed(list(stored.values()))} cents in the database",
           hint="20.0 - 0.1 in float holds 19.8999999999999985 (it prints as 19.9), and int(0.29 * 100) is 28. "
                "Money is a Decimal (or whole cents) from the request to the database.", todo=1)


def test_domain_errors_are_4xx(report: dict) -> None:
    """An unknown user is a 404, insufficient funds a 409; neither changes anything"""
    domain, stored = require(report, "domain", "domain_cents")
    unknown, over = domain["unknown_user"], domain["over_balance"]
    user = over["sent"]["user_id"]
    seeded = seeded_cents(report, user)
    expect(unknown["status"] == 404, called=f"{unknown['request']} (user {unknown['sent']['user_id']}: nobody)",
           expected="404 with a detail", got=answer(unknown),
           hint="raise HTTPException(status_code=404, ...) when the user does not exist.", todo=3)
    expect(over["status"] in (400, 402, 409), called=f"{over['request']} (balance {shown(seeded)})",
           expected="409 (400 or 402 accepted) with a detail", got=answer(over),
           hint="payments.charge raises InsufficientFunds; an exception you do not handle is a 500. "
                "Turn it into an HTTPException.", todo=3)
    expect(stored == seeded, called=f"reading user {user}'s balance_cents afterwards",
           expected=f"{seeded} (unchanged)", got=str(stored),
           hint="a refused payment must not touch the balance.", todo=3)


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
    errors = "; ".join(w["server_error"] for w in loop["waiting"] if w["server_error"])
    expect(loop["answered_while_locked"],
           called="locking the database, sending a payment and a lookup (they wait for the lock), then "
                  "GET /openapi.json (which needs no database)",
           expected=f"/openapi.json answered at once, while the lock is still held (up to {loop['lock_hold']:g} s)",
           got=f"answered only after the lock was released, {loop['probe']['seconds']:.2f} s later: the event loop "
               "was stuck in a database call"
               + (" (a query ran in the event loop's own thread and waited for the lock)" if loop["loop_waited"] else "")
               + f"; the waiting requests then got {[w['status'] for w in loop['waiting']]}"
               + (f"; the server raised {errors}" if errors else ""),
           hint="sqlite3 (and any blocking driver) called in an `async def` endpoint blocks the event loop. "
                "Use an async driver (SQLAlchemy with sqlite+aiosqlite), or keep the endpoint a plain `def` "
                "so FastAPI runs it in its thread pool (module 06 measures the difference).")


def test_concurrent_requests(report: dict) -> None:
    """A payment and a lookup for one user at once both succeed; a valid payment after refused ones succeeds"""
    together = require(report, "together")
    paid, looked = together["answers"]
    before = seeded_cents(report, paid["sent"]["user_id"])
    after = before - cents(paid["sent"]["amount"])
    expect(ok(paid["status"]) and looked["status"] == 200
           and balance_of(looked) in (money(shown(before)), money(shown(after))) and together["cents"] == after,
           called=f"{paid['request']} and {looked['request']}, sent at the same moment (balance {shown(before)})",
           expected=f"200 for both (the lookup shows the balance before or after the payment, {shown(before)} or "
                    f"{shown(after)}), and {after} cents stored",
           got=f"{answer(paid)}\nand {answer(looked)}\nstored after: {together['cents']} cents",
           hint="requests that run at once must not share what is one request's own: a session (or connection) "
                "is used by one request at a time, so hand out one per request (a dependency that yields it).")
    sequence = require(report, "after_refusal")
    answers, before = sequence["answers"], sequence["cents_before"]
    *refusals, valid = answers
    wanted = before - cents(valid["sent"]["amount"])
    expect(all(refused(r) for r in refusals) and ok(valid["status"]) and sequence["cents_after"] == wanted,
           called=", then ".join(a["request"] for a in answers) + f" (balance {shown(before)})",
           expected=f"a 4xx for each refused payment (the card fails Luhn; more than the balance), then 200 for the "
                    f"valid one, and {wanted} cents stored",
           got="\nthen ".join(answer(a) for a in answers) + f"\nstored after: {sequence['cents_after']} cents",
           hint="a refused payment must leave nothing behind (an open transaction, a held lock, a half-changed row) "
                "that stops or changes the next valid one.", todo=3)


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
