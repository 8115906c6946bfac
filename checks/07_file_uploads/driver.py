"""Runs a learner's module-07 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It imports app.py with a SQLite file database and MAX_UPLOAD_BYTES set, serves it with uvicorn
on 127.0.0.1 (in a thread of this process), and uploads CSV files to POST /imports: a small valid
one, a big valid one while it measures this process's peak memory (VmHWM, reset just before),
a file with one bad row deep inside, several malformed files, a file that is not a CSV, two small
files at once, and a refused file followed by a valid one. It stops that server with SIGINT (a
developer's Ctrl+C). Then it imports app.py again with a small MAX_UPLOAD_BYTES, uploads a file
under the limit and one twelve times the limit, without a Content-Length, stopping as soon as the
server answers; that server is stopped with SIGTERM. After every upload it counts the rows in the
database. It never judges: the checks read the report.

Every upload's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error") plus "rows" (the data rows of the
file sent), "mib" (its size) and "added" (the rows the database gained during the request).

Report keys (each check names the ones it needs with ``require``):

    small          SMALL_ROWS valid rows
    big            a valid file of BIG_MIB MiB, plus "growth_mib" (peak memory during the upload minus
                   the memory just before)
    bad_row        BAD_ROWS rows whose line BAD_LINE has a price of "12.50", plus "line"
    malformed      {case: upload} for the MALFORMED files
    wrong_type     the small file sent with Content-Type image/png
    after_errors   the small file again, after all of the above
    together       {"answers": [upload, upload], "added"}: the small file twice, sent at once; added: the
                   rows the database gained meanwhile
    after_refusal  [the small file with a negative price on line SMALL_BAD_LINE (plus "line"), then the
                   small file], one after the other
    under_limit    a valid file of UNDER_LIMIT_MIB MiB with MAX_UPLOAD_BYTES = LIMIT_MIB MiB
    oversize       {"status", "body", "sent", "total", "note", "added", "server_error"}: an upload of
                   OVERSIZE_MIB MiB (chunked, no Content-Length) with that limit; sent: bytes of the body
                   sent before the server answered (course.uploads.send_until_answered)
    limit_mib      the small MAX_UPLOAD_BYTES, in MiB
    stops          the two serving stages' stops (SIGINT, then SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from pathlib import Path

from course.grading.checking import Driver

SMALL_ROWS = 3
BIG_MIB = 24            # the memory test: read-all costs at least this much, streaming a few MiB
BIG_LIMIT_MIB = 64      # MAX_UPLOAD_BYTES for everything but the limit test
BAD_ROWS, BAD_LINE = 3000, 2345  # a bad row after several batches of rows
SMALL_BAD_LINE = 3      # the small file with a negative price there
LIMIT_MIB = 2           # MAX_UPLOAD_BYTES for the limit test
UNDER_LIMIT_MIB = 1
OVERSIZE_MIB = 24       # 12 x the limit
CLIENT_TIMEOUT = 20

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


def write_files(folder: Path) -> dict:
    """Every file the checks upload: name -> (path, data rows)."""
    from course.uploads import write_csv

    def csv(name: str, **kwargs) -> tuple[Path, int]:
        written = write_csv(folder / f"{name}.csv", **kwargs)
        return written.path, written.rows

    files = {"small": csv("small", rows=SMALL_ROWS, description_chars=40),
             "big": csv("big", size=BIG_MIB * 2**20, description_chars=600),
             "bad_row": csv("bad_row", rows=BAD_ROWS, description_chars=40,
                            bad={BAD_LINE: "SKU-BAD,Kettle,12.50,a price in euros not cents"}),
             "small_bad": csv("small_bad", rows=SMALL_ROWS, description_chars=40,
                              bad={SMALL_BAD_LINE: "SKU-1,Kettle,-5,a kettle"}),
             "under_limit": csv("under", size=UNDER_LIMIT_MIB * 2**20, description_chars=600)}
    for i, (name, bad) in enumerate(MALFORMED.items()):
        files[name] = (malformed_file(folder / f"malformed{i}.csv", bad), 0)
    return files


class Uploads:
    """The checks' uploads to one serving stage: POST /imports with a file, and the rows it added."""

    def __init__(self, svc, db: Path, files: dict) -> None:
        self.svc, self.db, self.files = svc, db, files

    async def post(self, name: str, content_type: str = "text/csv") -> dict:
        path, rows = self.files[name]
        with path.open("rb") as f:  # httpx reads it from disk in 64 KiB chunks
            got = await self.svc.send("POST", "/imports", files={"file": (path.name, f, content_type)},
                                      show=f"POST /imports with {path.name} ({content_type})", timeout=CLIENT_TIMEOUT)
        return {**got, "rows": rows, "mib": round(path.stat().st_size / 2**20, 1)}

    async def upload(self, name: str, content_type: str = "text/csv") -> dict:
        before = count_rows(self.db)
        return {**await self.post(name, content_type), "added": count_rows(self.db) - before}


async def uploads(d: Driver, module, db: Path, files: dict) -> None:
    from course.probes import peak_rss_mib, reset_peak_rss, rss_mib

    with d.serve(module.app, signal="SIGINT") as svc:
        sent = Uploads(svc, db, files)
        upload = sent.upload  # one file, and the rows it added
        with d.stage("requests", limit=45, doing="answering the checks' uploads"):
            d.report["small"] = await upload("small")
            reset_peak_rss()
            base = rss_mib()
            big = await upload("big")
            d.report["big"] = {**big, "growth_mib": round(peak_rss_mib(os.getpid()) - base, 1)}
            d.report["bad_row"] = {**await upload("bad_row"), "line": BAD_LINE}
            d.report["malformed"] = {name: await upload(name) for name in MALFORMED}
            d.report["wrong_type"] = await upload("small", content_type="image/png")
            d.report["after_errors"] = await upload("small")
            before = count_rows(db)
            answers = await svc.together(sent.post("small"), sent.post("small"))
            d.report["together"] = {"answers": answers, "added": count_rows(db) - before}
            d.report["after_refusal"] = [{**await upload("small_bad"), "line": SMALL_BAD_LINE}, await upload("small")]


async def limit_test(d: Driver, module, db: Path, files: dict) -> None:
    from course.server import REQUEST_HEADER
    from course.uploads import send_until_answered

    label = f"the app with MAX_UPLOAD_BYTES = {LIMIT_MIB} MiB"
    with d.serve(module.app, label=label, signal="SIGTERM") as svc:
        upload = Uploads(svc, db, files).upload
        with d.stage("limit", limit=30, doing=f"answering an upload of {OVERSIZE_MIB} MiB with a limit of {LIMIT_MIB} MiB"):
            d.report["under_limit"] = await upload("under_limit")

            def oversize() -> dict:
                rid = uuid.uuid4().hex[:12]
                got = send_until_answered(svc.url + "/imports", size=OVERSIZE_MIB * 2**20, chunked=True,
                                          timeout=CLIENT_TIMEOUT, headers={REQUEST_HEADER: rid})
                svc.errors.wait_done(rid, 2.0)  # the app is done with it: its exception, if any, is filed
                return {"status": got.status, "body": got.body[:400], "sent": got.sent, "total": got.total,
                        "note": got.note}

            before, mark = count_rows(db), svc.mark()
            over = await asyncio.to_thread(oversize)
            d.report["oversize"] = {**over, "server_error": svc.errors_since(mark), "added": count_rows(db) - before}


def main(d: Driver) -> None:
    db = d.scratch / "catalog.db"
    os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{db}"
    os.environ["MAX_UPLOAD_BYTES"] = str(BIG_LIMIT_MIB * 2**20)
    os.environ["TMPDIR"] = str(d.scratch)  # the server's spooled uploads
    d.report["limit_mib"] = LIMIT_MIB
    files = write_files(d.scratch)
    asyncio.run(uploads(d, d.import_stage("app.py"), db, files))

    os.environ["MAX_UPLOAD_BYTES"] = str(LIMIT_MIB * 2**20)
    module = d.import_stage("app.py", module_name="app_small_limit",
                            doing=f"importing app.py again with MAX_UPLOAD_BYTES={LIMIT_MIB * 2**20}")
    asyncio.run(limit_test(d, module, db, files))


if __name__ == "__main__":
    Driver.main(main)
