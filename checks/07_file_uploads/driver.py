"""Runs a learner's module-07 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It imports app.py with a SQLite file database and MAX_UPLOAD_BYTES set, serves it with uvicorn
on 127.0.0.1 (in a thread of this process), and uploads CSV files to POST /imports: a small valid
one, a big valid one while it measures this process's peak memory (VmHWM, reset just before),
a file with one bad row deep inside, several malformed files, and a file that is not a CSV.
Then it imports app.py again with a small MAX_UPLOAD_BYTES and sends an upload eight times that
size, without a Content-Length, stopping as soon as the server answers. After every request it
counts the rows in the database. It never judges: the checks read the report.

Report keys (each check names the ones it needs with ``require``):

    small             {"status", "body", "server_error", "added"}: POST /imports of SMALL_ROWS valid rows
                      (added: rows the database gained; server_error: the server's exception, "" if none)
    big               the same for a BIG_MIB MiB file, plus "rows" (its data rows), "mib" (its size),
                      "growth_mib" (peak memory during the upload minus the memory just before),
                      "seconds"
    bad_row           the same for a file of BAD_ROWS rows whose line BAD_LINE has a price of "12.50",
                      plus "line"
    malformed         {case: {"status", "body", "server_error", "added"}} for the MALFORMED files
    wrong_type        the same as small, for a valid CSV sent with Content-Type image/png
    after_errors      the same as small, sent after all of the above
    under_limit       the same as small, for a file of UNDER_LIMIT_MIB MiB with MAX_UPLOAD_BYTES = LIMIT_MIB MiB
    oversize          {"status", "body", "sent", "total", "seconds", "note", "added", "server_error"}: an upload
                      of OVERSIZE_MIB MiB (chunked, no Content-Length) with that limit; sent: bytes of the
                      body sent before the server answered
    limit_mib, big_limit_mib  the settings of this run
"""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
import time
from pathlib import Path

from course.grading.checking import Driver

SMALL_ROWS = 3
BIG_MIB = 24            # the memory test: read-all costs at least this much, streaming a few MiB
BIG_LIMIT_MIB = 64      # MAX_UPLOAD_BYTES for everything but the limit test
BAD_ROWS, BAD_LINE = 3000, 2345  # a bad row after several batches of rows
LIMIT_MIB = 2           # MAX_UPLOAD_BYTES for the limit test
UNDER_LIMIT_MIB = 1
OVERSIZE_MIB = 24       # 12 x the limit
CLIENT_TIMEOUT = 20

GOOD = "SKU-9,Kettle,3900,a kettle\n"
MALFORMED = {
    "a price that is not a whole number (12.50)": {3: "SKU-1,Kettle,12.50,a kettle"},
    "a missing column": {3: "SKU-1,Kettle,3900"},
    "a negative price": {3: "SKU-1,Kettle,-5,a kettle"},
    "an empty sku": {3: ",Kettle,3900,a kettle"},
    "bytes that are not UTF-8": {3: b"SKU-1,Kettle,3900,caf\xe9"},
    "a field over csv's 128 KiB limit": {3: "SKU-1,Kettle,3900," + "x" * 200_000},
    "the wrong header": {1: "id,title,price,text"},
    "an empty file": "",
}


def count_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM products").fetchone()[0]
    except sqlite3.OperationalError:  # no table yet
        return 0
    finally:
        conn.close()


def malformed_file(path: Path, bad) -> Path:
    from course.uploads import csv_bytes

    if isinstance(bad, str):
        path.write_text(bad)
        return path
    data = csv_bytes(5, description_chars=40).splitlines(keepends=True)
    for line, text in bad.items():
        raw = text if isinstance(text, bytes) else text.encode()
        data[line - 1] = raw + b"\n"
    path.write_bytes(b"".join(data))
    return path


async def serve_and_send(d: Driver, module, db: Path, files: dict[str, Path]) -> None:
    import httpx

    from course.probes import peak_rss_mib, reset_peak_rss, rss_mib
    from course.server import serve_in_thread

    with d.stage("startup", limit=10, doing="starting the app (the lifespan, up to its yield)"):
        server_cm = serve_in_thread(module.app, timeout_graceful_shutdown=2, ready_timeout=8)
        server = server_cm.__enter__()
    try:
        url = server.url + "/imports"
        client = httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0))

        async def send(path: Path, content_type: str = "text/csv") -> dict:
            """One upload's result; a failure is recorded, never raised."""
            before_rows, before_errors = count_rows(db), collections.Counter(server.errors)
            start = time.perf_counter()
            try:
                with path.open("rb") as f:  # httpx reads it in 64 KiB chunks
                    r = await client.post(url, files={"file": (path.name, f, content_type)})
                result = {"status": r.status_code, "body": r.text[:400]}
            except Exception as exc:  # noqa: BLE001 - httpx errors: no answer
                result = {"status": None, "body": f"no answer: {type(exc).__name__}: {exc}"[:400]}
            result["seconds"] = round(time.perf_counter() - start, 3)
            if result["status"] is None or result["status"] >= 500:
                await asyncio.sleep(0.05)  # let the server log what it raised
            result["server_error"] = server.describe_errors(before_errors)
            result["added"] = count_rows(db) - before_rows
            return result

        with d.stage("requests", limit=45, doing="answering the checks' uploads"):
            d.report["small"] = await send(files["small"])
            await asyncio.sleep(0.05)
            reset_peak_rss()
            base = rss_mib()
            big = await send(files["big"])
            big["growth_mib"] = round(peak_rss_mib(os.getpid()) - base, 1)
            big["mib"] = round(files["big"].stat().st_size / 2**20, 1)
            big["rows"] = files["big_rows"]
            d.report["big"] = big
            d.report["bad_row"] = {**await send(files["bad_row"]), "line": BAD_LINE}
            d.report["malformed"] = {name: await send(files[name]) for name in MALFORMED}
            d.report["wrong_type"] = await send(files["small"], content_type="image/png")
            d.report["after_errors"] = await send(files["small"])
        await client.aclose()
    finally:
        with d.stage("shutdown", limit=10, doing="stopping the app (the lifespan after its yield)"):
            server_cm.__exit__(None, None, None)


async def limit_test(d: Driver, module, db: Path, files: dict[str, Path]) -> None:
    from course.server import serve_in_thread
    from course.uploads import send_until_answered, upload_file

    with d.stage("startup (small limit)", limit=10,
                 doing=f"starting the app again with MAX_UPLOAD_BYTES={LIMIT_MIB * 2**20}"):
        server_cm = serve_in_thread(module.app, timeout_graceful_shutdown=2, ready_timeout=8)
        server = server_cm.__enter__()
    try:
        url = server.url + "/imports"
        with d.stage("limit", limit=30, doing=f"answering an upload of {OVERSIZE_MIB} MiB with a limit of {LIMIT_MIB} MiB"):
            before_rows, before_errors = count_rows(db), collections.Counter(server.errors)
            try:
                r = await upload_file(url, files["under_limit"], timeout=CLIENT_TIMEOUT)
                under = {"status": r.status_code, "body": r.text[:400]}
            except Exception as exc:  # noqa: BLE001
                under = {"status": None, "body": f"no answer: {type(exc).__name__}: {exc}"[:400]}
            await asyncio.sleep(0.02)
            under["server_error"] = server.describe_errors(before_errors)
            under["added"] = count_rows(db) - before_rows
            d.report["under_limit"] = under

            before_rows, before_errors = count_rows(db), collections.Counter(server.errors)
            answer = await asyncio.to_thread(send_until_answered, url, size=OVERSIZE_MIB * 2**20, chunked=True,
                                             timeout=CLIENT_TIMEOUT)
            await asyncio.sleep(0.05)
            d.report["oversize"] = {"status": answer.status, "body": answer.body[:400], "sent": answer.sent,
                                    "total": answer.total, "seconds": round(answer.seconds, 3), "note": answer.note,
                                    "server_error": server.describe_errors(before_errors),
                                    "added": count_rows(db) - before_rows}
    finally:
        with d.stage("shutdown", limit=10, doing="stopping the app (the lifespan after its yield)"):
            server_cm.__exit__(None, None, None)


def main(d: Driver) -> None:
    from course.uploads import csv_bytes, write_csv

    db = d.scratch / "catalog.db"
    os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{db}"
    os.environ["MAX_UPLOAD_BYTES"] = str(BIG_LIMIT_MIB * 2**20)
    os.environ["TMPDIR"] = str(d.scratch)  # the server's spooled uploads
    d.report.update(limit_mib=LIMIT_MIB, big_limit_mib=BIG_LIMIT_MIB)
    files: dict = {}
    small = d.scratch / "small.csv"
    small.write_bytes(csv_bytes(SMALL_ROWS, description_chars=40))
    files["small"] = small
    big = write_csv(d.scratch / "big.csv", size=BIG_MIB * 2**20, description_chars=600)
    files["big"], files["big_rows"] = big.path, big.rows
    files["bad_row"] = write_csv(d.scratch / "bad_row.csv", rows=BAD_ROWS, description_chars=40,
                                 bad={BAD_LINE: "SKU-BAD,Kettle,12.50,a price in euros not cents"}).path
    for i, (name, bad) in enumerate(MALFORMED.items()):
        files[name] = malformed_file(d.scratch / f"malformed{i}.csv", bad)
    files["under_limit"] = write_csv(d.scratch / "under.csv", size=UNDER_LIMIT_MIB * 2**20, description_chars=600).path

    with d.stage("import", limit=10, doing="importing app.py",
                 hint="run `python -c 'import app'` in your exercise folder and read the first error."):
        module = d.import_learner("app.py", needs="app")
    asyncio.run(serve_and_send(d, module, db, files))

    os.environ["MAX_UPLOAD_BYTES"] = str(LIMIT_MIB * 2**20)
    with d.stage("import (small limit)", limit=10, doing=f"importing app.py again with MAX_UPLOAD_BYTES={LIMIT_MIB * 2**20}"):
        module = d.import_learner("app.py", needs="app", module_name="app_small_limit")
    asyncio.run(limit_test(d, module, db, files))


if __name__ == "__main__":
    Driver.main(main)
