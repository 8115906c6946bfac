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
    """Importing a 24 MiB file takes a few MiB of memory, not the file's size"""
    big = require(report, "big")
    limit = big["mib"] / 2
    expect(big["status"] == 200, called=f"POST /imports with a valid CSV of {big['mib']} MiB",
           expected="200 (then the memory it took is measured)", got=answer(big),
           hint="see the expectation above: the import itself fails.", todo=2)
    expect(big["growth_mib"] < limit,
           called=f"POST /imports with a valid CSV of {big['mib']} MiB, measuring the server process's peak memory (VmHWM)",
           expected=f"the peak grows by less than {limit:.0f} MiB (half the file; streaming rows takes a few MiB)",
           got=f"it grew by {big['growth_mib']:.0f} MiB while the server imported the file",
           hint="the upload is already in a temporary file (file.file); read it row by row and insert in "
                "batches. `await file.read()`, a list of every row and a DataFrame each hold the whole file.",
           todo=2)


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


def test_bad_row_is_named(report: dict) -> None:
    """The 422 names the line of the bad row"""
    bad = require(report, "bad_row")
    line = bad["line"]
    named = re.search(rf"(?<!\d)({line}|{line - 1})(?!\d)", bad["body"] or "")
    expect(bad["status"] == 422 and named,
           called=f"POST /imports with {bad['rows']} rows; line {line} (the header is line 1) has the price 12.50",
           expected=f"422 whose detail names line {line} (or data row {line - 1})",
           got=answer(bad), hint="count lines as you read them (csv.reader's line_num does) and put the number "
                                 "in the detail: the client must find the row to fix it.", todo=3)


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
    """An upload that is not a CSV gets 415 (or 422)"""
    wrong = require(report, "wrong_type")
    expect(wrong["status"] in (415, 422) and wrong["added"] == 0,
           called="POST /imports with a file part whose Content-Type is image/png",
           expected="415 Unsupported Media Type (or 422), and no rows imported",
           got=f"{answer(wrong)}; rows added: {wrong['added']}",
           hint="UploadFile has the part's content type; accept text/csv (and what browsers send for .csv files).",
           todo=3)


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


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
