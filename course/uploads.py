"""Upload plumbing for module 07: big CSV files made fast, uploads sent from disk, and an upload
that stops as soon as the server answers.

    info = write_csv(path, size=100 * 2**20)          # ~100 MiB of product rows, in well under a second
    reset_peak_rss(server.pid)                         # VmHWM := current RSS (course.probes)
    response = await upload_file(server.url + "/import", info.path)
    peak_rss_mib(server.pid)                           # the peak during the upload (course.probes)
    answer = send_until_answered(server.url + "/import", size=24 * 2**20, chunked=True)
    answer.status, answer.sent                         # 413 after how many bytes of the body?

Two kinds of file (``kind=``): ``"products"`` (the default; exercise 07 and its checks), with the
columns ``sku,name,price_cents,description``, and ``"readings"`` (notebook 07's electricity meter
readings), with ``meter,read_at,wh,note``. Rows are formatted once (a block of distinct rows) and
written by repeating that block, so no Python code runs per row: 100 MiB takes a fraction of a
second, most of it the disk.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlsplit

__all__ = ["HEADER", "READINGS_HEADER", "KINDS", "CsvFile", "write_csv", "csv_rows", "csv_bytes", "upload_file",
           "send_until_answered", "Answer", "post_file_as_body", "multipart_head", "multipart_tail"]

HEADER = "sku,name,price_cents,description\n"
READINGS_HEADER = "meter,read_at,wh,note\n"
_BLOCK_ROWS = 1000
_TOKEN = "#####"


def _rows_block(description_chars: int) -> list[str]:
    """``_BLOCK_ROWS`` valid rows; descriptions vary around ``description_chars``. Each row holds the
    token ``#####`` three times (sku, name, description): every copy of the block replaces it with
    its own number, so every row of a file is distinct (a parser cannot share repeated strings)."""
    words = ("sturdy", "compact", "stainless", "recycled", "quiet", "ceramic", "oak", "waterproof", "light", "classic")
    rows = []
    for i in range(_BLOCK_ROWS):
        length = max(10, description_chars // 2 + (i * 37) % max(1, description_chars))
        text = " ".join(words[(i + k) % len(words)] for k in range(length // 6 + 1))[:length]
        rows.append(f"SKU-{_TOKEN}-{i:03d},Product {_TOKEN}-{i:03d},{100 + (i * 7919) % 99_900},lot {_TOKEN}: {text}\n")
    return rows


def _readings_block(note_chars: int) -> list[str]:
    """``_BLOCK_ROWS`` valid meter readings (``meter,read_at,wh,note``); notes vary around
    ``note_chars``. The meter id and the note hold the token ``#####`` (see :func:`_rows_block`);
    ``read_at`` is a quarter-hour of March 2026, ``wh`` a whole number of watt-hours."""
    words = ("reading", "estimated", "confirmed", "visit", "remote", "smart", "night", "tariff", "peak", "manual")
    rows = []
    for i in range(_BLOCK_ROWS):
        length = max(10, note_chars // 2 + (i * 37) % max(1, note_chars))
        text = " ".join(words[(i + k) % len(words)] for k in range(length // 6 + 1))[:length]
        day, minutes = divmod(i * 15, 24 * 60)
        read_at = f"2026-03-{1 + day % 28:02d}T{minutes // 60:02d}:{minutes % 60:02d}:00"
        rows.append(f"MTR-{_TOKEN}-{i:03d},{read_at},{(i * 7919) % 50_000},round {_TOKEN}: {text}\n")
    return rows


KINDS = {"products": (HEADER, _rows_block), "readings": (READINGS_HEADER, _readings_block)}


def _kind(kind: str) -> tuple[str, object]:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}") from None


def _numbered(block: str, n: int) -> str:
    return block.replace(_TOKEN, f"{n % 100_000:05d}")


def csv_rows(n: int, *, description_chars: int = 200, start: int = 0, kind: str = "products") -> Iterator[str]:
    """``n`` valid, distinct rows (no header), starting at row number ``start``."""
    block = _kind(kind)[1](description_chars)
    for k in range(start, start + n):
        b, i = divmod(k, _BLOCK_ROWS)
        yield _numbered(block[i], b)


@dataclass(frozen=True)
class CsvFile:
    path: Path
    bytes: int
    rows: int          # data rows, without the header (bad lines included)
    seconds: float     # time it took to write

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


def write_csv(path: str | os.PathLike, *, size: int | None = None, rows: int | None = None,
              description_chars: int = 200, bad: Mapping[int, str] | None = None, header: str | None = None,
              kind: str = "products") -> CsvFile:
    """Write a CSV of ``kind`` (products, or readings) of about ``size`` bytes (or exactly ``rows``
    data rows); ``description_chars`` sizes the last column.

    ``bad`` maps a line number (the header is line 1) to the raw text of that line, e.g.
    ``{2500: "SKU-x,Kettle,12.50,oops\\n"}``: the line replaces the valid row there.
    """
    start = time.perf_counter()
    default_header, make_block = _kind(kind)
    header = default_header if header is None else header
    block_text = "".join(make_block(description_chars))
    block_bytes = len(_numbered(block_text, 0).encode())
    if rows is None:
        if size is None:
            raise ValueError("give size= or rows=")
        rows = max(1, round((size - len(header)) / block_bytes * _BLOCK_ROWS))
    bad = {k: v if v.endswith("\n") else v + "\n" for k, v in (bad or {}).items() if 2 <= k <= rows + 1}
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(header)
        whole, rest = divmod(rows, _BLOCK_ROWS)
        for b in range(whole + (1 if rest else 0)):
            first = 2 + b * _BLOCK_ROWS  # the line number of this block's first row
            count = _BLOCK_ROWS if b < whole else rest
            if any(first <= k < first + count for k in bad) or count < _BLOCK_ROWS:
                lines = _numbered(block_text, b).splitlines(keepends=True)[:count]
                for k in bad:
                    if first <= k < first + count:
                        lines[k - first] = bad[k]
                f.write("".join(lines))
            else:
                f.write(_numbered(block_text, b))
    return CsvFile(path, path.stat().st_size, rows, time.perf_counter() - start)


def csv_bytes(rows: int, *, description_chars: int = 200, bad: Mapping[int, str] | None = None,
              header: str | None = None, kind: str = "products") -> bytes:
    """A small CSV in memory (for tests of bad input); ``bad`` as in :func:`write_csv`."""
    header = _kind(kind)[0] if header is None else header
    lines = [header] + list(csv_rows(rows, description_chars=description_chars, kind=kind))
    for line_no, text in (bad or {}).items():
        lines[line_no - 1] = text if text.endswith("\n") else text + "\n"
    return "".join(lines).encode()


# --- sending ------------------------------------------------------------------------------------------

async def upload_file(url: str, path: str | os.PathLike, *, field: str = "file", content_type: str = "text/csv",
                      filename: str | None = None, timeout: float = 120.0):
    """POST a file as ``multipart/form-data`` with httpx, read from disk in 64 KiB chunks (the
    sender's memory stays small, whatever the file's size). Returns the httpx.Response."""
    import httpx

    path = Path(path)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        with path.open("rb") as f:
            return await client.post(url, files={field: (filename or path.name, f, content_type)})


async def post_file_as_body(url: str, path: str | os.PathLike, *, content_type: str = "text/csv",
                            timeout: float = 120.0):
    """POST a file as the raw request body (no multipart), read from disk in 64 KiB chunks."""
    import httpx

    async def chunks():
        with Path(path).open("rb") as f:
            while chunk := f.read(64 * 1024):
                yield chunk

    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        return await client.post(url, content=chunks(), headers={"content-type": content_type})


def multipart_head(boundary: str, *, field: str = "file", filename: str = "products.csv",
                   content_type: str = "text/csv") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode()


def multipart_tail(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode()


@dataclass
class Answer:
    """What :func:`send_until_answered` saw."""

    status: int | None   # None: no HTTP answer (the connection closed, or the time ran out)
    body: str
    sent: int            # bytes of the request body sent before the answer came (or everything)
    total: int           # bytes the whole body would have had
    seconds: float
    note: str = ""

    @property
    def share_sent(self) -> float:
        return self.sent / self.total if self.total else 0.0


def send_until_answered(url: str, *, size: int, chunked: bool = True, content_type: str = "text/csv",
                        description_chars: int = 200, chunk: int = 64 * 1024, timeout: float = 30.0,
                        headers: Mapping[str, str] | None = None, kind: str = "products") -> Answer:
    """Upload about ``size`` bytes of valid CSV rows as a multipart file field ``file``, and stop
    sending as soon as the server answers. ``answer.sent`` says how much of the body the server
    had been sent by then: a server that enforces its limit while receiving answers early; one
    that looks at the size after the whole upload arrived answers only after the last byte.

    With ``chunked=True`` there is no Content-Length (``Transfer-Encoding: chunked``), so the server
    cannot decide from the headers alone. The sender's socket buffer is kept small, so ``sent`` is
    close to what the server has read. ``headers``: more request headers (e.g. the grader's request id).
    ``kind``: the rows' kind, as in :func:`write_csv`.
    """
    parts = urlsplit(url)
    boundary = "course" + uuid.uuid4().hex
    head = multipart_head(boundary, content_type=content_type)
    tail = multipart_tail(boundary)
    header, make_block = _kind(kind)
    block_text = "".join(make_block(description_chars))
    block_bytes = len(_numbered(block_text, 0).encode())
    n_blocks = max(1, (size - len(header)) // block_bytes)

    def body() -> Iterator[bytes]:
        yield head + header.encode()
        for b in range(n_blocks):
            yield _numbered(block_text, b).encode()
        yield tail

    total = len(head) + len(header) + n_blocks * block_bytes + len(tail)
    request = [f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
               f"Host: {parts.netloc}", f"Content-Type: multipart/form-data; boundary={boundary}", "Connection: close"]
    request.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    request += [f"{name}: {value}" for name, value in (headers or {}).items()]
    start = time.perf_counter()
    deadline = start + timeout
    sent = 0
    note = ""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    try:
        sock.settimeout(max(0.1, deadline - time.perf_counter()))
        sock.connect((parts.hostname, parts.port or 80))
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        sock.setblocking(False)
        answered = False
        for piece in body():
            for i in range(0, len(piece), chunk):
                data = piece[i:i + chunk]
                frame = (f"{len(data):x}\r\n".encode() + data + b"\r\n") if chunked else data
                view, pos = memoryview(frame), 0
                while pos < len(view):
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        note = f"still sending after {timeout:g} s"
                        break
                    readable, writable, _ = select.select([sock], [sock], [], min(left, 1.0))
                    if readable:
                        answered = True
                        break
                    if writable:
                        try:
                            pos += sock.send(view[pos:])
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError as exc:  # the server closed the connection (after answering?)
                            note = f"the server closed the connection while we sent ({type(exc).__name__})"
                            answered = True
                            break
                prefix = len(frame) - len(data) - 2 if chunked else 0  # the chunk-size line
                sent += min(len(data), max(0, pos - prefix))
                if answered or note:
                    break
            if answered or note:
                break
        if not answered and not note and chunked:
            with contextlib.suppress(OSError):
                sock.setblocking(True)
                sock.settimeout(max(0.1, deadline - time.perf_counter()))
                sock.sendall(b"0\r\n\r\n")
        status, text = _read_response(sock, deadline)
    except OSError as exc:
        status, text = None, ""
        note = note or f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    return Answer(status=status, body=text, sent=min(sent, total), total=total, seconds=time.perf_counter() - start,
                  note=note)


def _read_response(sock: socket.socket, deadline: float) -> tuple[int | None, str]:
    """Read an HTTP/1.1 response (status and up to 2000 characters of body) until the connection
    closes, Content-Length bytes arrived, or the deadline."""
    sock.setblocking(True)
    data = b""
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            got = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        except OSError:
            break
        if not got:
            break
        data += got
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(rest) >= length:
                break
    if not data.startswith(b"HTTP/"):
        return None, data[:2000].decode(errors="replace")
    head, _, rest = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, data[:2000].decode(errors="replace")
    return status, rest[:2000].decode(errors="replace")
