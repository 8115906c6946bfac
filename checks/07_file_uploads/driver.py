"""Runs a learner's module-07 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It imports app.py with a SQLite file database, MAX_UPLOAD_BYTES set and a temporary folder of its
own (TMPDIR, tempfile.tempdir), serves it with uvicorn on 127.0.0.1 (in a thread of this process),
and uploads CSV files to POST /imports: a small valid one; two valid ones (many short rows, then a
big one) while it measures this process's peak memory (VmHWM, reset just before), the big one while
it sends GET requests to another route (PING, answered on the app's own loop) one after another;
a file with one bad row deep inside, malformed files, a valid file full of multi-byte characters,
a big file refused early (then it looks for threads still running the app's code), the small file
as each media type in MEDIA_TYPES and as image/png, two small files at once, and a refused file
followed by a valid one. It stops that server with SIGINT (a
developer's Ctrl+C). Then it imports app.py again with a small MAX_UPLOAD_BYTES, uploads a file
under the limit and one twelve times the limit, without a Content-Length, stopping as soon as the
server answers; that server is stopped with SIGTERM. After every upload it counts the rows in the
database and lists the files in the temporary folder. It never judges: the checks read the report.

Every upload's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error") plus "rows" (the data rows of the
file sent), "mib" (its size), "added" (the rows the database gained during the request) and
"tmp_files" (the names of the files in the app's temporary folder after it).

Report keys (each check names the ones it needs with ``require``):

    small          SMALL_ROWS valid rows
    mid            a valid file of MID_MIB MiB of short rows, plus "growth_mib" (peak memory during the upload
                   minus the memory just before; measured after a warm-up import of the under_limit file)
    big            a valid file of BIG_MIB MiB, plus "growth_mib" and "pings": {"count", "slowest", "failed",
                   "seconds"}: GET PING sent one after another (PING_EVERY s apart) until the upload was
                   answered: how many, the slowest one's seconds, how many were not a 200, and how long
                   the upload took
    ping_floor, ping_share  PING_FLOOR, PING_SHARE: a ping may take max(floor, share x the upload's seconds)
    bad_row        BAD_ROWS rows whose line BAD_LINE has a price of "12.50", plus "line"
    malformed      {case: upload} for the MALFORMED files, plus "line" (the line a 422 must name, or None)
    multibyte      a valid file of MULTIBYTE_ROWS rows in 2- to 4-byte characters
    bad_early      a file of EARLY_BAD_MIB MiB whose line EARLY_BAD_LINE is bad, plus "line" and "threads": the
                   threads still running app.py's code THREADS_GRACE s after the answer, and the threads
                   that ended with an exception since the upload started (as text)
    threads_grace  THREADS_GRACE
    media_types    {media type: upload of the small file sent with it, plus "accept" (MEDIA_TYPES)}
    wrong_type     the small file sent with Content-Type image/png
    after_errors   the small file again, after all of the above
    together       {"answers": [upload, upload], "added"}: the under_limit file twice, sent at once; added:
                   the rows the database gained meanwhile
    after_refusal  [the small file with a negative price on line SMALL_BAD_LINE (plus "line"), then the
                   small file], one after the other
    under_limit    a valid file of UNDER_LIMIT_MIB MiB with MAX_UPLOAD_BYTES = LIMIT_MIB MiB
    oversize       {"status", "body", "sent", "total", "note", "added", "server_error", "tmp_files"}: an upload of
                   OVERSIZE_MIB MiB (chunked, no Content-Length) with that limit; sent: bytes of the body
                   sent before the server answered (course.uploads.send_until_answered)
    limit_mib      the small MAX_UPLOAD_BYTES, in MiB
    stops          the two serving stages' stops (SIGINT, then SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
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

MID_MIB = 6             # the memory test at a second size: many short rows
EARLY_BAD_MIB, EARLY_BAD_LINE = 4, 1000  # a big file refused early: nothing may go on reading it
MULTIBYTE_ROWS = 6000   # about 2.6 MiB of names and descriptions in 2-, 3- and 4-byte characters
PING = "/__course_ping__"  # the checks' other route, answered on the app's own event loop
PING_EVERY = 0.02       # seconds between the end of one ping and the next, during the big import
PING_FLOOR, PING_SHARE = 0.2, 0.15  # a ping may wait max(PING_FLOOR s, PING_SHARE of the import's time)
THREADS_GRACE = 0.3     # seconds a thread may take to leave the app's code after a 422
# Media types: accepted (True) or refused with 415 (False). The media type is compared whole, without
# its parameters and whatever its case; image/png is "wrong_type".
MEDIA_TYPES = {"text/csv": True, "text/plain": True, "application/vnd.ms-excel": True,
               "Text/CSV; charset=utf-8": True, "text/html": False, "text/csv-schema": False,
               "application/json": False}

# name -> (the file's lines that differ from five valid rows, or its whole text; the line a 422 names,
# or None when it may name none)
MALFORMED = {
    "a price that is not a whole number (12.50)": ({3: "SKU-1,Kettle,12.50,a kettle"}, 3),
    "a missing column": ({3: "SKU-1,Kettle,3900"}, 3),
    "a negative price": ({3: "SKU-1,Kettle,-5,a kettle"}, 3),
    "an empty sku": ({3: ",Kettle,3900,a kettle"}, 3),
    "bytes that are not UTF-8": ({3: b"SKU-1,Kettle,3900,caf\xe9"}, None),
    "a field over csv's 128 KiB limit": ({3: "SKU-1,Kettle,3900," + "x" * 200_000}, 3),
    "the wrong header": ({1: "id,title,price,text"}, 1),
    "an empty file": ("", None),
    # a valid description over lines 3 and 4 (quoted), then a bad price on line 6 (row 5)
    "a bad price after a description over two lines": (
        {3: 'SKU-1,Kettle,3900,"a kettle,\nwith a lid"', 5: "SKU-2,Teapot,4.50,a teapot"}, 6),
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
    for line, text in bad.items():  # the index of the list's item: a replaced item may hold two lines
        raw = text if isinstance(text, bytes) else text.encode()
        data[line - 1] = raw + b"\n"
    path.write_bytes(b"".join(data))
    return path


def multibyte_csv(path: Path, rows: int) -> Path:
    """Valid rows whose names and descriptions are full of 2-, 3- and 4-byte characters: wherever a
    reader cuts the bytes in chunks (1 KiB to 1 MiB), some cut falls inside a character."""
    pieces = "é€😀ü中ß→"
    lines = ["sku,name,price_cents,description\n"]
    for i in range(rows):
        text = "".join(pieces[(i + k) % len(pieces)] for k in range(150 + i % 13))
        lines.append(f"SKU-{i:06d},Café {pieces[i % len(pieces)]} {i},{100 + i % 900},{' ' * (i % 5)}{text}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def write_files(folder: Path) -> dict:
    """Every file the checks upload: name -> (path, data rows)."""
    from course.uploads import write_csv

    def csv(name: str, **kwargs) -> tuple[Path, int]:
        written = write_csv(folder / f"{name}.csv", **kwargs)
        return written.path, written.rows

    files = {"small": csv("small", rows=SMALL_ROWS, description_chars=40),
             "big": csv("big", size=BIG_MIB * 2**20, description_chars=200),
             "bad_row": csv("bad_row", rows=BAD_ROWS, description_chars=40,
                            bad={BAD_LINE: "SKU-BAD,Kettle,12.50,a price in euros not cents"}),
             "small_bad": csv("small_bad", rows=SMALL_ROWS, description_chars=40,
                              bad={SMALL_BAD_LINE: "SKU-1,Kettle,-5,a kettle"}),
             "under_limit": csv("under", size=UNDER_LIMIT_MIB * 2**20, description_chars=600),
             "mid": csv("mid", size=MID_MIB * 2**20, description_chars=40),
             "bad_early": csv("bad_early", size=EARLY_BAD_MIB * 2**20, description_chars=600,
                              bad={EARLY_BAD_LINE: "SKU-BAD,Kettle,12.50,a price in euros not cents"}),
             "multibyte": (multibyte_csv(folder / "multibyte.csv", MULTIBYTE_ROWS), MULTIBYTE_ROWS)}
    for i, (name, (bad, _)) in enumerate(MALFORMED.items()):
        files[name] = (malformed_file(folder / f"malformed{i}.csv", bad), 0)
    return files


class Ping:
    """The learner's app, and GET PING answered before it, on the same event loop: the checks' other
    route (while an endpoint holds the loop, it cannot be answered either)."""

    def __init__(self, app) -> None:
        self.app = app

    def __getattr__(self, name: str):
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == PING:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await self.app(scope, receive, send)


def threads_in(path: Path) -> list[str]:
    """The threads (but this one) running code of ``path`` now, as "thread name, line N"."""
    import sys
    import threading

    names = {t.ident: t.name for t in threading.enumerate()}
    found = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        while frame is not None and Path(frame.f_code.co_filename) != path:
            frame = frame.f_back
        if frame is not None:
            found.append(f"{names.get(ident, ident)}, at line {frame.f_lineno} of {path.name}")
    return found


class Uploads:
    """The checks' uploads to one serving stage: POST /imports with a file, the rows it added and the
    files left in the app's temporary folder."""

    def __init__(self, svc, db: Path, files: dict, spool: Path) -> None:
        self.svc, self.db, self.files, self.spool = svc, db, files, spool

    async def post(self, name: str, content_type: str = "text/csv") -> dict:
        path, rows = self.files[name]
        with path.open("rb") as f:  # httpx reads it from disk in 64 KiB chunks
            got = await self.svc.send("POST", "/imports", files={"file": (path.name, f, content_type)},
                                      show=f"POST /imports with {path.name} ({content_type})", timeout=CLIENT_TIMEOUT)
        return {**got, "rows": rows, "mib": round(path.stat().st_size / 2**20, 1)}

    async def upload(self, name: str, content_type: str = "text/csv") -> dict:
        before = count_rows(self.db)
        got = await self.post(name, content_type)
        return {**got, "added": count_rows(self.db) - before, "tmp_files": sorted(p.name for p in self.spool.iterdir())}

    async def measured(self, name: str) -> dict:
        """An upload, with how much this process's peak memory grew meanwhile (VmHWM, reset before)."""
        from course.probes import peak_rss_mib, reset_peak_rss, rss_mib

        reset_peak_rss()
        base = rss_mib()
        got = await self.upload(name)
        return {**got, "growth_mib": round(peak_rss_mib(os.getpid()) - base, 1)}

    async def pinged(self, name: str) -> dict:
        """:meth:`measured`, while GET PING is sent one after another until the upload is answered."""
        import time

        task = asyncio.ensure_future(self.measured(name))
        pings, start = [], time.perf_counter()
        while not task.done():
            ping = await self.svc.send("GET", PING, show="GET (the checks' other route)")
            pings.append((round(ping["seconds"], 3), ping["status"]))
            await asyncio.wait([task], timeout=PING_EVERY)
        got = await task
        return {**got, "pings": {"count": len(pings), "slowest": max((s for s, _ in pings), default=None),
                                 "failed": sum(1 for _, status in pings if status != 200),
                                 "seconds": round(time.perf_counter() - start, 3)}}


THREAD_ERRORS: list[str] = []  # exceptions that ended a thread, as "name: error" (watch_thread_errors)


def watch_thread_errors() -> None:
    """Record every exception that ends a thread (threading.excepthook), then let Python print it."""
    import threading

    original = threading.excepthook

    def hook(args) -> None:
        THREAD_ERRORS.append(f"{args.thread.name if args.thread else '?'} ended with "
                             f"{args.exc_type.__name__}: {args.exc_value}")
        original(args)

    threading.excepthook = hook


async def threads_left(path: Path, errors_mark: int) -> list[str]:
    """Threads still running the app's code THREADS_GRACE s after its answer (none: at once), and the
    threads that ended with an exception since ``errors_mark`` (one that read on after the answer dies
    when FastAPI closes the upload under it)."""
    import time

    deadline = time.monotonic() + THREADS_GRACE
    while (found := threads_in(path)) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return found + THREAD_ERRORS[errors_mark:]


async def uploads(d: Driver, module, db: Path, files: dict, spool: Path) -> None:
    with d.serve(Ping(module.app), signal="SIGINT") as svc:
        sent = Uploads(svc, db, files, spool)
        upload = sent.upload  # one file, and the rows it added
        with d.stage("requests", limit=45, doing="answering the checks' uploads"):
            d.report["small"] = await upload("small")
            await sent.pinged("under_limit")  # warms up what every import uses (threads, caches, the pings)
            d.report["mid"] = await sent.measured("mid")  # first: memory freed by a bigger import would hide it
            d.report["big"] = await sent.pinged("big")
            d.report["bad_row"] = {**await upload("bad_row"), "line": BAD_LINE}
            d.report["malformed"] = {name: {**await upload(name), "line": line} for name, (_, line) in MALFORMED.items()}
            d.report["multibyte"] = await upload("multibyte")
            errors_mark = len(THREAD_ERRORS)
            d.report["bad_early"] = {**await upload("bad_early"), "line": EARLY_BAD_LINE}
            d.report["bad_early"]["threads"] = await threads_left(Path(module.__file__), errors_mark)
            d.report["media_types"] = {media: {**await upload("small", content_type=media), "accept": accept}
                                       for media, accept in MEDIA_TYPES.items()}
            d.report["wrong_type"] = await upload("small", content_type="image/png")
            d.report["after_errors"] = await upload("small")
            before = count_rows(db)
            # 1 MiB each: long enough imports that the two transactions overlap
            answers = await svc.together(sent.post("under_limit"), sent.post("under_limit"))
            d.report["together"] = {"answers": answers, "added": count_rows(db) - before}
            d.report["after_refusal"] = [{**await upload("small_bad"), "line": SMALL_BAD_LINE}, await upload("small")]


async def limit_test(d: Driver, module, db: Path, files: dict, spool: Path) -> None:
    from course.server import REQUEST_HEADER
    from course.uploads import send_until_answered

    label = f"the app with MAX_UPLOAD_BYTES = {LIMIT_MIB} MiB"
    with d.serve(module.app, label=label, signal="SIGTERM") as svc:
        upload = Uploads(svc, db, files, spool).upload
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
            d.report["oversize"] = {**over, "server_error": svc.errors_since(mark), "added": count_rows(db) - before,
                                    "tmp_files": sorted(p.name for p in spool.iterdir())}


def main(d: Driver) -> None:
    db = d.scratch / "catalog.db"
    os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{db}"
    os.environ["MAX_UPLOAD_BYTES"] = str(BIG_LIMIT_MIB * 2**20)
    watch_thread_errors()
    files = write_files(d.scratch)
    # The app's temporary folder, empty: the spooled uploads (unnamed files, never listed) and anything
    # the learner's code puts there.
    spool = d.scratch / "tmp"
    spool.mkdir()
    os.environ["TMPDIR"] = tempfile.tempdir = str(spool)
    d.report["limit_mib"] = LIMIT_MIB
    d.report.update(ping_floor=PING_FLOOR, ping_share=PING_SHARE, threads_grace=THREADS_GRACE)
    asyncio.run(uploads(d, d.import_stage("app.py"), db, files, spool))

    os.environ["MAX_UPLOAD_BYTES"] = str(LIMIT_MIB * 2**20)
    module = d.import_stage("app.py", module_name="app_small_limit",
                            doing=f"importing app.py again with MAX_UPLOAD_BYTES={LIMIT_MIB * 2**20}")
    asyncio.run(limit_test(d, module, db, files, spool))


if __name__ == "__main__":
    Driver.main(main)
