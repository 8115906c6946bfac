"""Checks for exercise 07: file uploads in constant memory.

The learner's app runs in a subprocess under a real uvicorn server (driver.py), which uploads real
CSV files, measures the process's peak memory and counts the rows in the database; each test
below reads one part of what happened and names one expectation.
"""

from __future__ import annotations

import re

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "07_file_uploads"
WHAT = "importing app.py, serving it and uploading CSV files"
MIB = 2**20


def test_small_file_imported(report: dict) -> None:
    """A small valid CSV is imported: 200, and its rows are in the database"""
    small = require(report, "small")
    rows = small["rows"]
    expect(small["status"] == 200 and small["added"] == rows, called=f"POST /imports with a valid CSV of {rows} rows",
           expected=f"200, and {rows} new rows in the products table",
           got=f"{answer(small)}; rows added: {small['added']}",
           hint="read the server's error first; the table is `products` (sku, name, price_cents, description).")


def test_big_file_imported(report: dict) -> None:
    """A 24 MiB CSV is imported completely"""
    big = require(report, "big")
    expect(big["status"] == 200 and big["added"] == big["rows"],
           called=f"POST /imports with a valid CSV of {big['mib']} MiB ({big['rows']} rows)",
           expected=f"200, and {big['rows']} new rows",
           got=f"{answer(big)}; rows added: {big['added']}",
           hint="every row of a valid file ends up in the database, also the last batch.", todo=2)


def test_memory_stays_flat(report: dict) -> None:
    """Importing takes a few MiB of memory, not the file's size: at 6 MiB of short rows and at 24 MiB"""
    big, mid = require(report, "big", "mid")
    for upload in (mid, big):
        limit = upload["mib"] / 2
        expect(upload["status"] == 200, called=f"POST /imports with a valid CSV of {upload['mib']} MiB",
               expected="200 (then the memory it took is measured)", got=answer(upload),
               hint="see the expectations above: the import itself fails.", todo=2)
        expect(upload["growth_mib"] < limit,
               called=f"POST /imports with a valid CSV of {upload['mib']} MiB ({upload['rows']} rows), measuring the "
                      "server process's peak memory (VmHWM)",
               expected=f"the peak grows by less than {limit:.1f} MiB (half the file; streaming rows takes a few "
                        "MiB, whatever the size)",
               got=f"it grew by {upload['growth_mib']:.1f} MiB while the server imported the file",
               hint="the upload is already in a temporary file (file.file); read it row by row and insert in batches. "
                    "`await file.read()` (also for small files only), a list of every row, a DataFrame or anything "
                    "kept per row until the end (a list of the skus) grow with the file.", todo=2)


def test_loop_keeps_answering(report: dict) -> None:
    """While a 24 MiB file imports, the server keeps answering other requests"""
    big = require(report, "big")
    pings = big["pings"]
    limit = max(report["ping_floor"], report["ping_share"] * pings["seconds"])
    expect(big["status"] == 200, called=f"POST /imports with a valid CSV of {big['mib']} MiB",
           expected="200 (meanwhile the checks send requests to another route)", got=answer(big),
           hint="see the expectations above: the import itself fails.", todo=2)
    expect(pings["failed"] == 0 and pings["count"] >= 3 and pings["slowest"] <= limit,
           called=f"GET requests to another route of the server, one after another, while it imported "
                  f"{big['mib']} MiB ({pings['seconds']:.2f} s)",
           expected=f"every one answered, none waiting more than {limit:.2f} s: the event loop keeps serving while "
                    "the file is parsed",
           got=f"{pings['count']} sent, {pings['failed']} not answered 200, the slowest took {pings['slowest']} s",
           hint="an `async def` endpoint that parses (or checks) the whole file without an `await` holds the event "
                "loop: nobody else is answered meanwhile. Read and parse a batch at a time in a worker thread "
                "(run_in_threadpool) and await each batch, or await something after every batch.", todo=2)


def test_oversized_upload_gets_413(report: dict) -> None:
    """An upload over MAX_UPLOAD_BYTES gets 413, and one under it is imported"""
    under, over = require(report, "under_limit", "oversize")
    limit = report["limit_mib"]
    expect(under["status"] == 200,
           called=f"POST /imports with a valid {under['mib']:g} MiB CSV, MAX_UPLOAD_BYTES = {limit} MiB",
           expected="200 (the file is under the limit)", got=answer(under),
           hint="read MAX_UPLOAD_BYTES from the environment; the checks set it before importing app.py.", todo=1)
    expect(over["status"] == 413 and over["added"] == 0,
           called=f"POST /imports with {over['total'] / MIB:.0f} MiB of valid rows (chunked, no Content-Length), "
                  f"MAX_UPLOAD_BYTES = {limit} MiB",
           expected="413 Content Too Large, and no rows imported",
           got=(f"{answer(over) if over['status'] else 'no answer: ' + (over['note'] or over['body'] or 'none')}; "
                f"rows added: {over['added']}"),
           hint="without a limit, one client can fill the server's disk (the spooled file) and its database. "
                "A Content-Length header can be missing (chunked uploads) or lie: count the bytes that arrive.",
           todo=1)


def test_limit_enforced_while_receiving(report: dict) -> None:
    """An oversized upload is stopped while it arrives, not after all of it was received"""
    over = require(report, "oversize")
    share = over["sent"] / over["total"] if over["total"] else 1.0
    expect(over["status"] is not None and over["status"] < 500 and share < 0.5,
           called=f"POST /imports with {over['total'] / MIB:.0f} MiB (chunked), MAX_UPLOAD_BYTES = "
                  f"{report['limit_mib']} MiB, stopping as soon as the server answers",
           expected="an answer before half of the body was sent (the limit is counted as the bytes arrive)",
           got=(f"{answer(over) if over['status'] else 'no answer'} after {over['sent'] / MIB:.1f} MiB of "
                f"{over['total'] / MIB:.1f} MiB had been sent ({share:.0%})"),
           hint="an UploadFile parameter is filled only after the whole body has arrived, so a size check in the "
                "endpoint comes too late. FastAPI can count the body's bytes for a route while it parses it.",
           todo=1)


def test_bad_row_is_422(report: dict) -> None:
    """A file with one malformed row gets 422, not a 500"""
    bad = require(report, "bad_row")
    expect(bad["status"] == 422,
           called=f"POST /imports with {bad['rows']} rows; line {bad['line']} has the price 12.50 (not whole cents)",
           expected="422 with a detail", got=answer(bad),
           hint="the client sent a bad file: that is the client's error (4xx), not the server's (500). "
                "Catch what checking a row raises and answer 422.", todo=3)


def lines_named(detail: str) -> set[int]:
    """The line numbers a 422's detail names as "line <n>"."""
    return {int(n) for n in re.findall(r"\bline\s+(\d+)", detail or "", re.IGNORECASE)}


def test_bad_row_is_named(report: dict) -> None:
    """The 422 names the line of the file that is bad, exactly (the header is line 1)"""
    bad, early, malformed = require(report, "bad_row", "bad_early", "malformed")
    cases = {bad["request"]: bad, early["request"]: early,
             **{name: r for name, r in malformed.items() if r["line"] is not None}}
    wrong = {name: r for name, r in cases.items()
             if r["status"] != 422 or lines_named(detail_of(r)) != {r["line"]}}
    expect(not wrong,
           called="POST /imports with files whose one bad line the checks know: " + "; ".join(
               f"{name} (line {r['line']})" for name, r in cases.items()),
           expected='422 whose detail names that line as "line <n>", and no other: the line of the file, counted '
                    "from the header (line 1); a quoted field may span two lines",
           got=lambda: "\n".join(f"{name}: expected line {r['line']}, got {answer(r)}" for name, r in wrong.items()),
           hint="count lines as you read them (csv.reader's line_num does, quoted newlines included) and put the "
                "number in the detail: the client must find the line to fix it. A row number is not a line number.",
           todo=3)


def detail_of(r: dict) -> str:
    body = r.get("json")
    return body["detail"] if isinstance(body, dict) and isinstance(body.get("detail"), str) else (r.get("body") or "")


def test_bad_file_imports_nothing(report: dict) -> None:
    """A file with a bad row imports nothing, not the rows before it"""
    bad = require(report, "bad_row")
    expect(bad["added"] == 0,
           called=f"POST /imports with {bad['rows']} rows; line {bad['line']} is bad",
           expected="0 new rows: one transaction per import, rolled back on the bad row",
           got=f"{bad['added']} rows were imported ({answer(bad)})",
           hint="a commit after each batch keeps the batches before the bad row. Keep the whole import in one "
                "transaction, and let the error roll it back.", todo=4)


def test_malformed_files_are_422(report: dict) -> None:
    """Malformed files get 422 (never a 500) and import nothing"""
    cases = require(report, "malformed")
    wrong = {name: r for name, r in cases.items() if r["status"] != 422 or r["added"]}
    expect(not wrong, called="POST /imports with files that each have one problem: " + "; ".join(cases),
           expected="422 for each, and no rows imported",
           got=lambda: "\n".join(f"{name}: {answer(r)}; rows added: {r['added']}" for name, r in wrong.items()),
           hint="check every field (count, empty, whole non-negative cents), the header, and what reading the file "
                "itself can raise (UnicodeDecodeError, csv.Error).", todo=3)


def test_wrong_content_type_rejected(report: dict) -> None:
    """Every CSV media type is accepted, whatever its parameters and case; any other gets 415 (or 422)"""
    wrong, media = require(report, "wrong_type", "media_types")
    cases = {"image/png": {**wrong, "accept": False}, **media}
    bad = {m: r for m, r in cases.items()
           if (r["accept"] and not (r["status"] == 200 and r["added"] == r["rows"]))
           or (not r["accept"] and not (r["status"] in (415, 422) and r["added"] == 0))}
    expect(not bad, called="POST /imports with a valid CSV sent as each of: " + ", ".join(cases),
           expected="200 for " + ", ".join(m for m, r in cases.items() if r["accept"]) + "; 415 (or 422) and no rows "
                    "for " + ", ".join(m for m, r in cases.items() if not r["accept"]),
           got=lambda: "\n".join(f"{m}: {answer(r)}; rows added: {r['added']}" for m, r in bad.items()),
           hint="compare the media type whole, against the set CSV_TYPES: without its parameters (`; charset=...`) "
                "and in lower case. A substring or a prefix lets text/html or text/csv-schema in.", todo=3)


def test_multibyte_text_imported(report: dict) -> None:
    """Valid UTF-8 imports, wherever a multi-byte character falls"""
    mb = require(report, "multibyte")
    expect(mb["status"] == 200 and mb["added"] == mb["rows"],
           called=f"POST /imports with a valid CSV of {mb['rows']} rows ({mb['mib']} MiB) whose names and "
                  "descriptions are full of é, €, 中 and emoji (2 to 4 bytes each)",
           expected=f"200, and {mb['rows']} new rows", got=f"{answer(mb)}; rows added: {mb['added']}",
           hint="a character can straddle two chunks of bytes: decoding each chunk on its own fails on valid text. "
                "Decode a line at a time, or with an incremental decoder (io.TextIOWrapper, "
                "codecs.getincrementaldecoder).", todo=3)


def test_still_works_after_errors(report: dict) -> None:
    """After the failed imports, a valid file is imported again"""
    after = require(report, "after_errors")
    rows = after["rows"]
    expect(after["status"] == 200 and after["added"] == rows,
           called=f"POST /imports with a valid CSV of {rows} rows, after the bad files",
           expected=f"200, and {rows} new rows", got=f"{answer(after)}; rows added: {after['added']}",
           hint="a transaction that an error left open keeps the database locked: end it (a `with` block does).",
           todo=4)


def test_concurrent_imports(report: dict) -> None:
    """Two imports at once both land; a valid import after a refused one succeeds"""
    together = require(report, "together")
    answers, added = together["answers"], together["added"]
    rows = sum(a["rows"] for a in answers)
    expect(all(a["status"] == 200 for a in answers) and added == rows,
           called=" and ".join(a["request"] for a in answers) + ", sent at the same moment",
           expected=f"200 for both, and {rows} new rows (both files)",
           got=" / ".join(answer(a) for a in answers) + f"\nrows added: {added}",
           hint="each request needs its own session and its own transaction: one session shared by the whole app "
                "(opened in the lifespan) cannot hold two transactions at once.",
           todo=4)
    refused, valid = require(report, "after_refusal")
    expect(refused["status"] == 422 and refused["added"] == 0 and valid["status"] == 200
           and valid["added"] == valid["rows"],
           called=f"{refused['request']} (line {refused['line']} is bad), then {valid['request']}",
           expected=f"422 and no rows for the bad file, then 200 and {valid['rows']} new rows",
           got=f"{answer(refused)}; rows added: {refused['added']}\nthen {answer(valid)}; rows added: {valid['added']}",
           hint="the bad file is the client's error (422, not a 500), and refusing it must leave nothing behind "
                "(an open transaction, a held lock) that stops the next valid import: end it with a `with` block.",
           todo=3 if refused["status"] != 422 else 4)


def test_import_leaves_nothing_behind(report: dict) -> None:
    """An import leaves no file in the temporary folder, and no thread at work after a 422"""
    early = require(report, "bad_early")
    uploads = [r for key in ("small", "big", "mid", "bad_row", "multibyte", "bad_early", "wrong_type",
                             "after_errors", "under_limit", "oversize") if isinstance(r := report.get(key), dict)]
    uploads += [*report.get("malformed", {}).values(), *report.get("media_types", {}).values()]
    left = sorted({name for r in uploads for name in r.get("tmp_files", [])})
    expect(not left, called=f"{len(uploads)} imports, accepted and refused, listing the app's temporary folder "
                            "(TMPDIR) after each",
           expected="no file left there (FastAPI's own spooled uploads have no name and vanish when closed)",
           got=f"left behind: {', '.join(left)}",
           hint="a copy of the upload you make yourself must be removed on every path, the 422 and the 413 too: "
                "`try`/`finally`, or a `tempfile.TemporaryFile` (no name, removed when closed).", todo=2)
    expect(not early["threads"],
           called=f"{early['request']} ({early['mib']} MiB; line {early['line']} is bad), then looking at what "
                  f"every thread of the server runs, {report['threads_grace']} s after the answer",
           expected="no thread still running your code, none ended by an error: the refused import has stopped",
           got=f"{answer(early)}; threads still in app.py: " + ("; ".join(early["threads"]) or "none"),
           hint="a thread that reads ahead (a producer filling a queue) goes on reading, or waits forever on a full "
                "queue, once the endpoint has answered 422: nobody stops it. Read each batch in a call that ends "
                "(run_in_threadpool), or stop and join the thread in a `finally`.", todo=2)


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
