"""course.uploads: the CSV generator puts bad lines where asked, and the early-answer upload
reports how much it sent."""

from __future__ import annotations

import csv

from fastapi import FastAPI, HTTPException, Request

from course.server import serve_in_thread
from course.uploads import HEADER, csv_bytes, send_until_answered, write_csv


def test_write_csv_rows_size_and_bad_lines(tmp_path) -> None:
    f = write_csv(tmp_path / "a.csv", rows=2500, bad={1234: "SKU-x,Kettle,12.50,oops"})
    rows = list(csv.reader(f.path.open(newline="")))
    assert f.rows == 2500 and len(rows) == 2501 and rows[0] == HEADER.strip().split(",")
    assert rows[1233] == ["SKU-x", "Kettle", "12.50", "oops"]  # line 1234
    good = [r for i, r in enumerate(rows[1:], start=2) if i != 1234]
    assert all(len(r) == 4 and r[2].isdigit() for r in good)
    assert len({r[0] for r in good}) == len(good)  # distinct rows
    sized = write_csv(tmp_path / "b.csv", size=3 * 2**20)
    assert abs(sized.bytes - 3 * 2**20) < 2**20 / 50


def test_csv_bytes_replaces_a_line() -> None:
    lines = csv_bytes(3, bad={3: "x,y"}).decode().splitlines()
    assert len(lines) == 4 and lines[2] == "x,y"


def test_send_until_answered_stops_early_and_reports() -> None:
    app = FastAPI()

    @app.post("/limited")
    async def limited(request: Request) -> dict:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > 2**20:
                raise HTTPException(status_code=413)
        return {"bytes": received}

    @app.post("/unlimited")
    async def unlimited(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    with serve_in_thread(app) as server:
        early = send_until_answered(server.url + "/limited", size=16 * 2**20)
        late = send_until_answered(server.url + "/unlimited", size=4 * 2**20)
    assert early.status == 413 and early.share_sent < 0.5, early
    assert late.status == 200 and late.sent == late.total and '"bytes"' in late.body, late


def test_readings_are_the_other_kind(tmp_path) -> None:
    """kind="readings": notebook 07's meter readings (meter,read_at,wh,note), valid and distinct."""
    from datetime import datetime

    from course.uploads import READINGS_HEADER

    f = write_csv(tmp_path / "r.csv", rows=2500, kind="readings", bad={7: "MTR-1,2026-03-01,12.5,kWh"})
    rows = list(csv.reader(f.path.open(newline="")))
    assert rows[0] == READINGS_HEADER.strip().split(",") and rows[6][2] == "12.5"
    good = [r for i, r in enumerate(rows[1:], start=2) if i != 7]
    assert all(len(r) == 4 and r[2].isdigit() and datetime.fromisoformat(r[1]) for r in good)
    assert len({r[0] for r in good}) == len(good)
    assert csv_bytes(2, kind="readings").startswith(READINGS_HEADER.encode())
