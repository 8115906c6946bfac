"""course.drill: module 09's partners, database and bank statements."""

from __future__ import annotations

import csv
import sqlite3

import httpx

from course.drill import BOXES, FEE_CENTS, MEMBERS, NO_EMAIL, ledger, member, seed, serve_partners, write_statement


def test_seed_is_consistent(tmp_path) -> None:
    db = tmp_path / "harvest.db"
    seed(db, pending=3)
    assert member(db, 1)["credit_cents"] == 10_000 == sum(ledger(db, member_id=1))
    assert member(db, NO_EMAIL[0])["email"] is None and member(db, 1)["email"]
    assert ledger(db, order_id=7) == [-(BOXES["small"] + FEE_CENTS)]
    with sqlite3.connect(db) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())
    assert statuses == {"paid": MEMBERS, "pending": 3}


def test_statement_credits_what_it_says(tmp_path) -> None:
    big = write_statement(tmp_path / "big.csv", size=2**20)
    with big.path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["booked_on", "bank_ref", "member_id", "amount_cents", "memo"] and len(rows) == big.rows + 1
    totals: dict[int, int] = {}
    for _, _, who, cents, _ in rows[1:]:
        totals[int(who)] = totals.get(int(who), 0) + int(cents)
    assert totals == big.credited and 0.9 < big.mib < 1.1
    assert len({r[1] for r in rows[1:]}) == big.rows  # every bank reference once
    again = write_statement(tmp_path / "other.csv", rows=10, start=7)
    assert not {r[1] for r in rows[1:]} & {line.split(",")[1] for line in again.path.read_text().splitlines()[1:]}
    bad = write_statement(tmp_path / "bad.csv", rows=1500, bad={1234: "x,y,z"})
    assert bad.path.read_text().splitlines()[1233] == "x,y,z"


def test_partners_count_and_refuse() -> None:
    with serve_partners(quote=0.01) as partner, httpx.Client(base_url=partner.url, timeout=10) as client:
        partner.stats.refuse_first.add("HB-1")
        assert client.post("/courier/bookings", json={"reference": "HB-1"}).status_code == 503
        key = {"Idempotency-Key": "booking-HB-1"}
        first = client.post("/courier/bookings", json={"reference": "HB-1"}, headers=key).json()
        again = client.post("/courier/bookings", json={"reference": "HB-1"}, headers=key).json()
        assert first["booking"] == again["booking"] and partner.stats.booked("HB-1") == 1
        client.post("/courier/bookings", json={"reference": "HB-1"})  # no key: a second booking
        assert partner.stats.booked("HB-1") == 2 and partner.stats.attempts["HB-1"] == 4
        assert client.post("/mail/messages", json={"to": None}).status_code == 422
        partner.stats.refuse_mail_to.add("a@example.org")
        assert client.post("/mail/messages", json={"to": "a@example.org"}).status_code == 422
        assert client.post("/mail/messages", json={"to": "b@example.org"}).status_code == 202
        assert partner.stats.refused_mails == 2 and len(partner.stats.mails) == 1
        assert client.post("/courier/quotes", json={"address": "1 Mill Street"}).json()["fee_cents"] == FEE_CENTS
        assert partner.stats.connections == 1  # one kept-alive connection for everything above
        assert partner.stats.wait_until(lambda s: s.booked("HB-1") == 2, 0.1)
        assert not partner.stats.wait_until(lambda s: s.booked("HB-2"), 0.05)
