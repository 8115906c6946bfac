"""``course probe``, the probing side: start the app, send what the course's lessons send, stop it,
and turn what was seen into findings.

The steps, in order (each one's seconds are in ``report.timings``):

1. start: ``python -m course.probing.launch`` (course/probing/launch.py) imports the app under the
   course's counters and serves it with uvicorn on 127.0.0.1, a port of its own; ruff runs on the
   app's own files meanwhile;
2. fuzz: schemathesis from the test-tools environment, every operation of the OpenAPI schema (only
   GET without ``allow_writes``); each operation's first 5xx is sent again to read the exception
   the app raised, with the app's own line;
3. bad JSON (writes only): for every JSON-body operation, a body schemathesis had accepted with one
   value replaced by NaN, Infinity or a lone surrogate (``"\\ud800"``), which schemathesis never sends;
4. load: every GET route with a known good URL, alone and in a burst of ``burst`` at once
   (course.load.fire), the loop's lag measured during each (course.blocking.LagProbe);
5. PATCH (writes only): a one-field PATCH with the value the resource already has, then GET: did
   another field change?
6. stop: SIGTERM, as a deploy does; the launcher reports what was left (connections, clients,
   threads, processes, files, tasks) and what was created at import and per request.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from course.probing import sections
from course.probing.sections import KINDS, Kind
from course.probing.tools import INSTALL, TOOLS, Case, FuzzResult, fuzz, ruff

__all__ = ["Finding", "ProbeReport", "run_probe", "READ_ONLY"]

READ_ONLY = ("GET", "HEAD", "OPTIONS")
CONTROL = "/__course_probe__/"
HEADER = "x-course-request"
START_TIMEOUT = 30.0      # seconds for the import and the lifespan's startup
STOP_TIMEOUT = 12.0       # seconds from SIGTERM to the process's exit (uvicorn waits 5 s for requests)
LAG_ALONE = 0.08          # s: the loop blocked this long while one request ran alone
LAG_BURST = 0.5           # s: the loop blocked this long in total during the burst...
LAG_BURST_LONGEST = 0.08  # ...with at least one stall this long
QUEUE_RATIO = 4.0         # the burst's slowest request took this many times one request alone...
QUEUE_EXTRA = 1.0         # ...and this many seconds more
MAX_LOAD_ROUTES = 8
BURST_TIMEOUT = 10.0      # s a request of the burst may take: longer is a failure
MAX_BAD_JSON = 80         # requests in step 3
WIDTH = 100               # the table's lines (evidence is wrapped)


@dataclass
class Finding:
    """One thing the probe saw, with its evidence and the section that teaches it."""

    kind: str                 # "shutdown-connections", "ruff ASYNC251", ...
    title: str
    module: str
    section: str              # the notebook's "## " heading (without the minutes)
    notebook: str
    evidence: list[str] = field(default_factory=list)
    operation: str | None = None
    also: list[dict] = field(default_factory=list)   # [{"module", "section", "notebook"}]: other causes

    @classmethod
    def of(cls, kind: str | Kind, evidence: list[str], operation: str | None = None, name: str | None = None,
           title: str | None = None):
        k = KINDS[kind] if isinstance(kind, str) else kind
        sec = sections.section(k.module, k.heading)
        also = [{"module": m, "section": h, "notebook": sections.section(m, h).notebook} for m, h in k.also]
        return cls(name or (kind if isinstance(kind, str) else k.title), title or k.title, k.module, sec.heading,
                   sec.notebook, [e for e in evidence if e], operation, also)


@dataclass
class ProbeReport:
    target: str
    app_dir: str
    allow_writes: bool
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None            # the app could not be imported or started
    notes: list[str] = field(default_factory=list)   # what was not tested, and why
    tested: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0: nothing found; 1: findings; 2: the app could not be probed."""
        return 2 if self.error else 1 if self.findings else 0

    def read_next(self) -> list[tuple[str, str, str]]:
        """(module, heading, notebook) of every finding's section, in course order, each once."""
        seen = {(f.module, f.section): f.notebook for f in self.findings}
        seen.update({(a["module"], a["section"]): a["notebook"] for f in self.findings for a in f.also})
        return [(m, h, seen[(m, h)]) for m, h in sorted(seen)]

    def as_dict(self) -> dict:
        return {"target": self.target, "app_dir": self.app_dir, "allow_writes": self.allow_writes,
                "exit_code": self.exit_code, "error": self.error, "seconds": round(self.seconds, 2),
                "findings": [asdict(f) for f in self.findings], "notes": self.notes, "tested": self.tested,
                "timings": {k: round(v, 2) for k, v in self.timings.items()},
                "read_next": [{"module": m, "section": h, "notebook": n} for m, h, n in self.read_next()]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1)

    def table(self) -> str:
        mode = "writes allowed" if self.allow_writes else "read-only: GET only"
        lines = [f"course probe {self.target}  ({self.app_dir}; {mode}; {self.seconds:.1f} s)", ""]
        if self.error:
            lines += [f"  The app could not be probed: {self.error}", ""]
        if self.findings:
            width = max(len(f.kind) for f in self.findings)
            lines.append(f"  {'#':>2}  {'finding':<{width}}  what and where")
            for i, f in enumerate(self.findings, 1):
                lines.append(f"  {i:>2}  {f.kind:<{width}}  {f.title}" + (f" ({f.operation})" if f.operation else ""))
                for e in f.evidence[:6]:
                    lines += textwrap.wrap(e, WIDTH, initial_indent=" " * (width + 10),
                                           subsequent_indent=" " * (width + 12), break_on_hyphens=False)
                if len(f.evidence) > 6:
                    lines.append(f"  {'':>2}  {'':<{width}}    ... {len(f.evidence) - 6} more")
                also = "".join(f"; or {a['module']} · {a['section']}" for a in f.also)
                lines += textwrap.wrap(f"read: {f.module} · {f.section}{also}", WIDTH,
                                       initial_indent=" " * (width + 10), subsequent_indent=" " * (width + 12))
        elif not self.error:
            lines.append("  No findings.")
        if self.tested:
            lines += [""] + textwrap.wrap("Tested: " + "; ".join(f"{k} {v}" for k, v in self.tested.items()),
                                          WIDTH, subsequent_indent="  ")
        for note in self.notes:
            lines += textwrap.wrap(f"Not tested: {note}", WIDTH, subsequent_indent="  ")
        if self.findings:
            lines += ["", "What to read next:"]
            for module, heading, notebook in self.read_next():
                lines.append(f"  {module} · {heading}    ({notebook})")
        lines.append("")
        lines.append(f"{len(self.findings)} finding(s)" + (", the app could not be probed" if self.error else "")
                     + f"; exit code {self.exit_code}.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # a notebook cell shows the table
        p.text(self.table())


# --- the launcher ----------------------------------------------------------------------------------

class Launched:
    """The app's process (course/probing/launch.py) and its control paths."""

    def __init__(self, target: str, app_dir: Path, env: dict[str, str], factory: bool, workdir: Path,
                 cwd: Path, allow_writes: bool) -> None:
        self.ready, self.report_path = workdir / "ready.json", workdir / "report.json"
        self.log_path = workdir / "server.log"
        cmd = [sys.executable, "-m", "course.probing.launch", target, "--ready", str(self.ready),
               "--report", str(self.report_path), "--app-dir", str(app_dir)] + (["--factory"] if factory else []) \
            + ([] if allow_writes else ["--read-only"])
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=full_env, cwd=cwd, start_new_session=True)
        self.url = ""
        self.client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_started(self, timeout: float) -> str | None:
        """None once the app answers; else why not (it exited, or the time ran out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "exited"
            if not self.url and self.ready.exists():
                self.url = f"http://127.0.0.1:{json.loads(self.ready.read_text())['port']}"
            if self.url:
                try:
                    self.client.get(self.url + CONTROL + "info", timeout=1)
                    return None
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        return "timeout"

    def control(self, what: str, **params: Any) -> dict:
        return self.client.get(self.url + CONTROL + what, params=params, timeout=30).json()

    def send(self, method: str, url: str, *, content: str | bytes | None = None,
             headers: dict | None = None) -> tuple[httpx.Response | None, str, list[str]]:
        """One request with its own id: (response or None, transport error text, what the app raised)."""
        rid = uuid.uuid4().hex[:12]
        try:
            response = self.client.request(method, url, content=content,
                                           headers={**(headers or {}), HEADER: rid}, timeout=30)
            failure = ""
        except httpx.HTTPError as exc:
            response, failure = None, f"{type(exc).__name__}: {exc}"
        try:
            raised = self.control("request", id=rid)["errors"]
        except (httpx.HTTPError, ValueError):
            raised = []
        return response, failure, raised

    def stop(self, timeout: float) -> bool:
        """SIGTERM, as a deploy sends it; True if the process exited by itself within ``timeout``."""
        from course.processes import stop_tree

        self.client.close()
        if self.proc.poll() is not None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
        stop_tree(self.proc, timeout=0, group=True)  # and whatever the app started
        return stopped

    def report(self) -> dict | None:
        try:
            return json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            return None


# --- schema helpers ----------------------------------------------------------------------------------

def operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, ops in schema.get("paths", {}).items()
            for method, op in ops.items() if method.lower() in ("get", "head", "options", "post", "put", "patch",
                                                                 "delete")]


def resolve(schema: dict, node: Any) -> Any:
    """Follow ``$ref`` (and a single allOf/anyOf non-null branch) to the schema it names."""
    for _ in range(20):
        if isinstance(node, dict) and "$ref" in node:
            target: Any = schema
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target.get(part, {})
            node = target
        elif isinstance(node, dict) and ("anyOf" in node or "allOf" in node) and "type" not in node:
            branches = [b for b in node.get("anyOf", node.get("allOf", [])) if b.get("type") != "null"]
            node = branches[0] if branches else {}
        else:
            return node
    return node


def json_body_schema(schema: dict, op: dict) -> dict | None:
    content = (op.get("requestBody") or {}).get("content") or {}
    media = content.get("application/json")
    return resolve(schema, media.get("schema", {})) if media is not None else None


def example(schema: dict, node: Any, depth: int = 0) -> Any:
    """A plain value for a JSON schema: required fields only, the simplest value of each type. The
    bad-JSON step only uses it when schemathesis had no accepted body to start from."""
    node = resolve(schema, node)
    if not isinstance(node, dict) or depth > 5:
        return None
    for key in ("example", "default"):
        if key in node:
            return node[key]
    if "examples" in node and node["examples"]:
        return node["examples"][0]
    if "enum" in node and node["enum"]:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        props = node.get("properties", {})
        return {name: example(schema, props[name], depth + 1) for name in node.get("required", []) if name in props}
    if kind == "array":
        return [example(schema, node.get("items", {}), depth + 1)] if node.get("minItems") else []
    if kind == "integer":
        low = node.get("minimum", node.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in node else 1)
        return int(low)
    if kind == "number":
        return float(node.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "string":
        formats = {"email": "ada@example.com", "uri": "https://example.com/", "date": "2024-01-02",
                   "date-time": "2024-01-02T03:04:05Z", "uuid": "12345678-1234-5678-1234-567812345678"}
        if node.get("format") in formats:
            return formats[node["format"]]
        return "A" * max(1, int(node.get("minLength", 1)))
    return None


def fill_path(path: str, value: str = "1") -> str:
    return re.sub(r"\{[^}]+\}", value, path)


# --- the steps ------------------------------------------------------------------------------------------

def describe(raised: list[str], limit: int = 3) -> list[str]:
    """What the app raised, each text once, without SQLAlchemy's "(Background on this error ...)"."""
    seen = list(dict.fromkeys(re.sub(r"\s*\(Background on this error at: [^)]*\)", "", r) for r in raised))
    more = [f"... {len(seen) - limit} more"] if len(seen) > limit else []
    return [f"the app raised: {r}" for r in seen[:limit]] + more


def crashed(response: httpx.Response | None, raised: list[str]) -> bool:
    """No answer, a 500, or another 5xx for which the app raised (a 502 or 503 may be on purpose)."""
    return response is None or response.status_code == 500 or (response.status_code > 500 and bool(raised))


def step_fuzz(app: Launched, result: FuzzResult, findings: list[Finding]) -> None:
    """A finding per operation with a crash: a 500, or a 5xx for which the app raised. The case is
    sent again to read the exception (with the app's own line). A 502 or 503 the app answers on
    purpose (its upstream is down, it is busy) raises nothing and is not a finding."""
    by_operation: dict[str, list[Case]] = {}
    for case in result.failures:
        by_operation.setdefault(case.operation, []).append(case)
    for operation, cases in by_operation.items():
        crashes = [c for c in cases if c.status == 500] or [c for c in cases if c.status is None]
        for case in (crashes or cases)[:3]:
            headers = {k: v for k, v in case.headers.items() if k.lower() in ("content-type", "accept")}
            response, failure, raised = app.send(case.method, case.url, content=case.body, headers=headers)
            if not raised and case.status not in (500, None):
                continue  # answered on purpose
            shown = f"{case.method} {case.url.replace(app.url, '')}" \
                + (f" body {case.body[:150]!r}" if case.body else "")
            got = f"{case.status} {case.response[:120]}".strip() if case.status else "no answer"
            evidence = [f"{shown} -> {got} (schemathesis, {case.phase} phase)"] + describe(raised)
            if not raised and response is not None and response.status_code < 500:
                evidence.append(f"sent again it answered {response.status_code}: it depends on earlier requests")
            if len(crashes) > 1:
                evidence.append(f"{len(crashes)} failing cases for this operation")
            text = " ".join(raised) + case.response
            findings.append(Finding.of(sections.server_error_kind(text), evidence, operation, name="server-error"))
            break


def accepted_case(result: FuzzResult | None, operation: str) -> Case | None:
    """A case of ``operation`` that got past validation: a 2xx or 3xx, else a 4xx other than 400/422."""
    if result is None:
        return None
    for ok in (lambda s: s < 400, lambda s: 400 < s < 500 and s not in (413, 415, 422)):
        for case in result.answered(operation, ok):
            return case
    return None


def bad_json_bodies(body: Any, optional: dict[str, Any] | None = None) -> list[tuple[str, str, Any]]:
    """(kind, what, body) variants: each value (one level down into objects too) replaced by NaN,
    numbers also by Infinity, strings by a lone surrogate. ``optional``: fields the body does not
    have (name -> an example value), each added alone with the same replacements."""
    variants: list[tuple[str, str, Any]] = []
    if not isinstance(body, dict):
        return [("nonfinite-500", "x=NaN", {"x": float("nan")})]
    for name, value in (optional or {}).items():
        if name not in body:
            variants += [(kind, what, {**body, **extra}) for kind, what, extra in bad_json_bodies({name: value})]
    if not body:
        return variants or [("nonfinite-500", "x=NaN", {"x": float("nan")})]

    def replace(path: list[str], value: Any) -> Any:
        copy = json.loads(json.dumps(body))
        node = copy
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return copy

    leaves: list[tuple[list[str], Any]] = []
    for key, value in body.items():
        if isinstance(value, dict) and value:
            leaves += [([key, sub], v) for sub, v in value.items()]
        else:
            leaves.append(([key], value))
    for path, value in leaves:
        name = ".".join(path)
        variants.append(("nonfinite-500", f"{name}=NaN", replace(path, float("nan"))))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            variants.append(("nonfinite-500", f"{name}=Infinity", replace(path, float("inf"))))
        if isinstance(value, str):
            variants.append(("surrogate-500", f'{name}="\\ud800"', replace(path, "\ud800")))
    return variants


def step_bad_json(app: Launched, schema: dict, allowed: list[tuple[str, str, dict]], result: FuzzResult | None,
                  findings: list[Finding]) -> int:
    sent = 0
    for method, path, op in allowed:
        body_schema = json_body_schema(schema, op)
        if body_schema is None:
            continue
        operation = f"{method} {path}"
        case = accepted_case(result, operation)
        base, url = None, None
        if case is not None and case.body:
            with contextlib.suppress(ValueError):
                base, url = json.loads(case.body), case.url
        if url is None:
            base, url = example(schema, body_schema), app.url + fill_path(path)
        found: dict[str, Finding] = {}
        properties = body_schema.get("properties", {}) if isinstance(body_schema, dict) else {}
        optional = {name: example(schema, node) if example(schema, node) is not None else "A"
                    for name, node in properties.items()}
        for kind, what, body in bad_json_bodies(base, optional):
            if sent >= MAX_BAD_JSON or kind in found:
                continue
            content = json.dumps(body)  # Python's json writes NaN and Infinity as bare literals
            response, failure, raised = app.send(method, url, content=content,
                                                 headers={"content-type": "application/json"})
            sent += 1
            if not crashed(response, raised):
                continue
            got = f"{response.status_code} {response.text[:100]}" if response is not None else failure
            found[kind] = Finding.of(kind, [f"{method} {url.replace(app.url, '')} with {what}: {content[:160]}",
                                            f"-> {got}"] + describe(raised), operation)
        findings.extend(found.values())
    return sent


def load_url(app: Launched, path: str, op: dict, result: FuzzResult | None) -> str | None:
    """A URL for GET ``path`` that answers well: a schemathesis case with a 2xx, or the path itself
    when it takes no required parameter."""
    if result is not None:
        good = result.answered(f"GET {path}", lambda s: 200 <= s < 300)
        if good:
            return good[0].url
    required = [p for p in op.get("parameters", []) if p.get("required")]
    if not required and not (op.get("requestBody") or {}).get("required"):
        return app.url + path
    return None


def measure(app: Launched, url: str, burst: int) -> dict:
    """One request alone, then ``burst`` at once, with the loop's lag during each."""
    from course.harness import run_sync
    from course.load import fire

    m1 = app.control("mark")
    start = time.perf_counter()
    response, failure, raised = app.send("GET", url)
    alone = time.perf_counter() - start
    m2 = app.control("mark")
    load = run_sync(fire(url, n=burst, concurrency=burst, timeout=BURST_TIMEOUT, progress=False,
                         headers={HEADER: "course-probe-burst"}))
    m3 = app.control("mark")
    w1 = app.control("window", since=m1["clock"], until=m2["clock"])
    w2 = app.control("window", since=m2["clock"], until=m3["clock"], errors=m2["errors"])
    alone_ok = response is not None and response.status_code < 500
    queued = alone_ok and bool(load.latencies) and load.max > max(QUEUE_RATIO * alone, alone + QUEUE_EXTRA)
    return {
        "response": response, "alone": alone, "load": load, "w1": w1, "w2": w2, "alone_ok": alone_ok,
        "lagged": w1["max_lag"] >= LAG_ALONE or (w2["blocked"] >= LAG_BURST and w2["max_lag"] >= LAG_BURST_LONGEST),
        "clearly_lagged": w1["max_lag"] >= 2 * LAG_ALONE and w2["blocked"] >= 2 * LAG_BURST,
        "clearly_queued": queued and load.max > 2 * max(QUEUE_RATIO * alone, alone + QUEUE_EXTRA),
        # 500s and requests that got no answer (a 502 or 503 may be the app's answer on purpose)
        "server_errors": load.statuses.get(500, 0) + load.statuses.get("error", 0),
        "queued": queued,
    }


def step_load(app: Launched, schema: dict, result: FuzzResult | None, burst: int,
              findings: list[Finding], tested: dict, notes: list[str]) -> None:
    routes = []
    for method, path, op in operations(schema):
        if method == "GET" and not path.startswith(CONTROL):
            url = load_url(app, path, op, result)
            if url is None:
                notes.append(f"GET {path} under load: no request to it answered 2xx")
            else:
                routes.append((path, url))
    if len(routes) > MAX_LOAD_ROUTES:
        notes.append(f"load: only the first {MAX_LOAD_ROUTES} of {len(routes)} GET routes")
        routes = routes[:MAX_LOAD_ROUTES]
    for path, url in routes:
        operation = f"GET {path}"
        shown = url.replace(app.url, "")
        m = measure(app, url, burst)
        # A busy machine can stall any process now and then: a lag or a queue that is not clear
        # counts when a second measurement shows it again (a blocking call or a held pool shows it
        # every time).
        if (m["lagged"] and not m["clearly_lagged"]) or (m["queued"] and not m["clearly_queued"]):
            again = measure(app, url, burst)
            m["lagged"] = m["clearly_lagged"] or (m["lagged"] and again["lagged"])
            m["queued"] = m["clearly_queued"] or (m["queued"] and again["queued"])
        load, w1, w2, alone, response = m["load"], m["w1"], m["w2"], m["alone"], m["response"]
        if m["lagged"]:
            unanswered = load.statuses.get("error", 0)
            findings.append(Finding.of("loop-lag", [
                f"GET {shown} alone: the loop stalled up to {w1['max_lag']:.2f} s (answered in {alone:.2f} s)",
                f"{burst} at once: the loop was blocked {w2['blocked']:.2f} s in total, up to {w2['max_lag']:.2f} s "
                f"at a time; the slowest answer took {load.max:.2f} s"
                + (f"; {unanswered} got no answer within {BURST_TIMEOUT:g} s" if unanswered else "")], operation))
            if not load.statuses.get(500) and not w2["errors"]:
                continue  # requests that timed out behind the blocked loop: that finding says it
        if m["server_errors"] and m["alone_ok"]:
            texts = [f"{text} (x{n})" for text, n in load.errors.most_common(2)]
            kind = sections.server_error_kind(" ".join(w2["errors"]) + " ".join(texts), "burst-errors")
            findings.append(Finding.of(kind, [
                f"GET {shown}: alone {response.status_code} in {alone:.2f} s; {burst} at once: "
                f"{m['server_errors']} failed ({dict(load.statuses)}), slowest {load.max:.2f} s", *texts]
                + describe(w2["errors"]), operation, name="burst-errors"))
        elif m["queued"] and not m["lagged"]:
            findings.append(Finding.of("burst-queueing", [
                f"GET {shown}: one alone answered in {alone:.2f} s; {burst} at once: p50 {load.p50:.2f} s, "
                f"slowest {load.max:.2f} s, and the loop did not stall: they waited for each other (a pool "
                "held across a slow call, a lock, a cap)"], operation))
    tested["load"] = f"{len(routes)} GET route(s), alone and {burst} at once"


def step_patch(app: Launched, schema: dict, result: FuzzResult | None, findings: list[Finding],
               notes: list[str]) -> int:
    ops = operations(schema)
    gets = {path for method, path, _ in ops if method == "GET"}
    tried = 0
    for method, path, op in ops:
        if method != "PATCH":
            continue
        operation = f"PATCH {path}"
        body_schema = json_body_schema(schema, op)
        if path not in gets or body_schema is None:
            notes.append(f"{operation}: no GET on the same path to compare with")
            continue
        # A resource whose fields are set: the fuzzing's own PATCHes may have emptied the ones it
        # read (an app that writes every field of the model nulls them), and a one-field PATCH shows
        # that it changed the others only where they had values. The first few that answer 200.
        urls = [case.url for case in (result.answered(f"GET {path}", lambda s: 200 <= s < 300) if result else [])]
        urls = list(dict.fromkeys(urls[:3] + [app.url + fill_path(path, value) for value in ("1", "2", "3")]))
        url, state, fields = None, None, []
        for candidate in urls:
            r, _, _ = app.send("GET", candidate)
            if r is None or r.status_code != 200:
                continue
            try:
                got = r.json()
            except ValueError:
                continue
            set_fields = [name for name in body_schema.get("properties", {}) if isinstance(got, dict)
                          and got.get(name) is not None]
            if url is None or len(set_fields) > len(fields):
                url, state, fields = candidate, got, set_fields
            if len(fields) >= 2:
                break
        if url is None:
            notes.append(f"{operation}: found no resource to read (GET {path} never answered 200)")
            continue
        shown = url.replace(app.url, "")
        for name in fields[:2]:
            body = json.dumps({name: state[name]})
            tried += 1
            response, failure, raised = app.send("PATCH", url, content=body,
                                                 headers={"content-type": "application/json"})
            if crashed(response, raised):
                got = failure or f"{response.status_code} {response.text[:100]}"
                findings.append(Finding.of(sections.server_error_kind(" ".join(raised), "patch-error"), [
                    f"PATCH {shown} {body} (the value it already had) -> {got}"] + describe(raised),
                    operation, name="patch-error"))
                break
            if response.status_code >= 300:
                continue
            after_response, _, _ = app.send("GET", url)
            after = after_response.json() if after_response is not None and after_response.status_code == 200 else {}
            changed = {k: (v, after.get(k)) for k, v in state.items() if k != name and after.get(k) != v}
            if changed:
                findings.append(Finding.of("patch-overwrite", [
                    f"PATCH {shown} {body} (the value it already had) -> {response.status_code}",
                    "then GET: " + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())], operation))
            break
    return tried


def launcher_findings(rep: dict, findings: list[Finding]) -> None:
    """Findings from what the launcher counted: at import, per request, after the shutdown."""
    imp, serving, after = rep.get("import") or {}, rep.get("serving") or {}, rep.get("after_shutdown") or {}

    def at(r: dict) -> str:
        return r.get("where") or "outside the app's files"

    for e in imp.get("engines", []):
        findings.append(Finding.of("import-engine", [f"engine for {e['url']} created at {at(e)}"]))
    for c in imp.get("clients", []):
        findings.append(Finding.of("import-client", [f"httpx.{c['kind']} created at {at(c)}"]))
    for s in imp.get("settings", []):
        findings.append(Finding.of("import-settings", [f"{s['class']}() built at {at(s)}"]))
    if imp.get("threads"):
        findings.append(Finding.of("import-thread", [f"{t['name']} ({t['runs']}) started at {at(t)}"
                                                     for t in imp["threads"]]))
    if imp.get("processes"):
        findings.append(Finding.of("import-process", [f"pid {p['pid']}: {p['cmd']}" for p in imp["processes"]]))
    if imp.get("connections"):
        findings.append(Finding.of("import-connection", [f"{s} {local} -> {remote}"
                                                         for s, local, remote in imp["connections"]]))

    def per_request(kind: str, records: list[dict], label: str) -> None:
        made = [r for r in records if r["stage"] == "request"]
        if len(made) >= 2:
            places = sorted({at(r) for r in made})
            shown = "; ".join(places[:3]) + (f"; and {len(places) - 3} more places" if len(places) > 3 else "")
            findings.append(Finding.of(kind, [f"{len(made)} {label} built while serving requests, at {shown}"]))

    # An engine without a pool (NullPool: Celery's result backend makes one per call) keeps nothing
    # open between requests; a pool per request is what breaks a database's connection budget.
    per_request("request-engine", [e for e in serving.get("engines", []) if e.get("pool") != "NullPool"],
                "engines (each with its pool)")
    per_request("request-client", serving.get("clients", []), "httpx clients")
    per_request("request-settings", serving.get("settings", []), "settings objects")

    open_engines = [e for e in after.get("engines", []) if e["open"] > 0]
    explained_threads = []
    if open_engines:
        evidence = [f"{e['open']} of {e['opened']} connection(s) still open: engine for {e['url']} "
                    f"(created {'at import' if e['stage'] == 'import' else 'during ' + e['stage']}, {at(e)})"
                    for e in open_engines]
        explained_threads = [t for t in after.get("threads", []) if t["runs"].startswith("aiosqlite")]
        if explained_threads:
            evidence.append(f"and {len(explained_threads)} aiosqlite thread(s) serving them, still running")
        findings.append(Finding.of("shutdown-connections", evidence))
    unclosed = after.get("clients", [])
    if unclosed:
        groups: dict[str, int] = {}
        for c in unclosed:
            when = "at import" if c["stage"] == "import" else f"during {c['stage']}"
            key = f"httpx.{c['kind']} created {when}, {at(c)}"
            groups[key] = groups.get(key, 0) + 1
        findings.append(Finding.of("shutdown-client", [f"{n} x {key}: never closed" for key, n in groups.items()]))
    threads = [t for t in after.get("threads", []) if t not in explained_threads]
    if threads:
        findings.append(Finding.of("shutdown-threads", [
            f"{t['name']} ({t['runs']}, not a daemon: the process cannot exit), started {t['stage']} at {at(t)}"
            for t in threads]))
    if after.get("processes"):
        findings.append(Finding.of("shutdown-processes", [f"pid {p['pid']}: {p['cmd']}" for p in after["processes"]]))
    if after.get("connections"):
        findings.append(Finding.of("shutdown-sockets", [f"{s} {local} -> {remote}"
                                                        for s, local, remote in after["connections"]]))
    # A SQLite file (and its -journal, -wal) held by an engine's open connection: that finding's.
    databases = [re.sub(r"^[^:]+:///", "", e["url"]) for e in open_engines]
    files = [f for f in after.get("files", []) if not any(d and f.startswith(d) for d in databases)]
    if files:
        findings.append(Finding.of("shutdown-files", [f"still open: {f}" for f in files]))
    if after.get("tasks"):
        findings.append(Finding.of("shutdown-tasks", [f"still running: {t}" for t in after["tasks"]]))
    for e in rep.get("lifespan_errors", []):
        if e["stage"] == "shutdown":
            findings.append(Finding.of("shutdown-error", [e["message"][-300:]]))
    after_response = rep.get("after_response") or []
    for kind, background in (("error-after-response", False), ("background-error", True)):
        texts = [r["text"] for r in after_response if r["background"] == background]
        if texts:
            findings.append(Finding.of(kind, texts[:5]))


def static_findings(lints: list, findings: list[Finding]) -> None:
    for lint in lints:
        kind = sections.rule_kind(lint.code)
        findings.append(Finding.of(kind, [f"{lint.file} line {lint.line}: {lint.source}"],
                                   name=f"ruff {lint.code}", title=lint.message))


# --- the probe -------------------------------------------------------------------------------------------

def run_probe(target: str, *, app_dir: str | os.PathLike | None = None, env: dict[str, str] | None = None,
              allow_writes: bool = False, factory: bool = False, max_examples: int = 15, burst: int = 20,
              fuzz_routes: bool = True, phases: str = "examples,coverage,fuzzing,stateful",
              cwd: str | os.PathLike | None = None,
              progress: Callable[[str], None] | None = None) -> ProbeReport:
    """Probe ``target`` (``module:attribute``, imported from ``app_dir``, default the working
    directory, as uvicorn's ``--app-dir``); ``env`` is added to the app's environment;
    ``fuzz_routes=False`` skips schemathesis (the load step then uses the routes without parameters)."""
    say = progress or (lambda text: None)
    started, cpu_start = time.perf_counter(), cpu_seconds()
    app_dir = Path(app_dir or cwd or os.getcwd()).resolve()
    report = ProbeReport(target=target, app_dir=str(app_dir), allow_writes=allow_writes)
    findings: list[Finding] = []
    if ":" not in target:
        report.error = f"{target!r}: name the app as MODULE:ATTRIBUTE, e.g. main:app (as uvicorn does)"
        return report
    allowed_methods = None if allow_writes else list(READ_ONLY)
    workdir = Path(tempfile.mkdtemp(prefix="course-probe-"))
    t = time.perf_counter()
    app = Launched(target, app_dir, dict(env or {}), factory, workdir, Path(cwd or os.getcwd()), allow_writes)
    lint_result: dict[str, Any] = {}
    lint_thread = None
    rep = None
    try:
        say(f"starting {target} (app dir {app_dir})")
        why = app.wait_started(START_TIMEOUT)
        report.timings["start"] = time.perf_counter() - t
        if why is not None:
            stopped_in_time = app.stop(STOP_TIMEOUT)
            rep = app.report()
            if rep and rep.get("error"):
                report.error = f"{rep['error']['stage']} failed: {rep['error']['message']}"
            elif why == "timeout":
                report.error = f"the app did not start within {START_TIMEOUT:g} s (import and lifespan startup)"
            else:
                report.error = f"the server exited during startup; its log:\n{app.log()[-1500:]}"
            if not stopped_in_time:
                report.error += " (and it did not stop on SIGTERM)"
            rep = None
            return report
        info = app.control("info")
        if (TOOLS / "ruff").exists():
            def lint() -> None:
                lint_result["lints"], lint_result["error"] = ruff(info["files"], app_dir)
            lint_thread = threading.Thread(target=lint, name="course-probe-ruff", daemon=True)
            lint_thread.start()
        else:
            report.notes.append(f"static checks: ruff is missing (.venv-test); install it with `{INSTALL}`")

        schema: dict | None = None
        try:
            r = app.client.get(app.url + "/openapi.json")
            schema = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            schema = None
        if not schema or "paths" not in schema:
            report.notes.append("routes: the app serves no OpenAPI schema at /openapi.json")
            schema = None
        ops = operations(schema) if schema else []
        allowed = [o for o in ops if allow_writes or o[0] in READ_ONLY]
        skipped = [f"{m} {p}" for m, p, _ in ops if (m, p, _) not in allowed]
        if skipped:
            report.notes.append(f"{', '.join(skipped)}: they write; run with --allow-writes against a "
                                "throwaway database")
        report.tested["routes"] = f"{len(allowed)} of {len(ops)} operation(s)"

        result: FuzzResult | None = None
        if schema and allowed:
            if not fuzz_routes:
                report.notes.append("routes: not fuzzed (--no-fuzz, or fuzz=False)")
            elif (TOOLS / "schemathesis").exists():
                say(f"schemathesis: {len(allowed)} operation(s), at most {max_examples} examples each")
                t = time.perf_counter()
                result = fuzz(app.url, workdir / "schemathesis", methods=allowed_methods, phases=phases,
                              max_examples=max_examples, timeout=60, header=f"{HEADER}:schemathesis")
                report.timings["fuzz"] = time.perf_counter() - t
                report.tested["schemathesis"] = f"{len(result.cases)} case(s)"
                for error in result.errors[:3]:
                    report.notes.append(f"schemathesis: {error[:300]}")
                step_fuzz(app, result, findings)
            else:
                report.notes.append(f"routes: schemathesis is missing (.venv-test); install it with `{INSTALL}`")
            if allow_writes:
                t = time.perf_counter()
                say("NaN, Infinity and lone surrogates in JSON bodies")
                report.tested["bad JSON"] = f"{step_bad_json(app, schema, allowed, result, findings)} request(s)"
                report.timings["bad JSON"] = time.perf_counter() - t
        if schema:
            say(f"each GET route alone and {burst} at once, with the loop's lag")
            t = time.perf_counter()
            step_load(app, schema, result, burst, findings, report.tested, report.notes)
            report.timings["load"] = time.perf_counter() - t
            if allow_writes and any(m == "PATCH" for m, _, _ in ops):
                t = time.perf_counter()
                tried = step_patch(app, schema, result, findings, report.notes)
                report.tested["PATCH"] = f"{tried} one-field PATCH(es)"
                report.timings["PATCH"] = time.perf_counter() - t
    except (httpx.HTTPError, ValueError, KeyError, OSError) as exc:
        # The app stopped answering the probe (it crashed, or its process exited): say so, with its log.
        lost = f"the probe lost the app ({type(exc).__name__}: {exc})"
        if app.proc.poll() is not None:
            lost += f"; its process exited with code {app.proc.returncode}"
        report.error = lost + "; the server's log ends:\n" + app.log()[-1500:]
    finally:
        if rep is None and (report.error is None or report.error.startswith("the probe lost")):
            say("SIGTERM, and what is left")
            t = time.perf_counter()
            stopped = app.stop(STOP_TIMEOUT)
            report.timings["stop"] = time.perf_counter() - t
            rep = app.report()
            if not stopped:
                findings.append(Finding.of("shutdown-hang", [
                    f"still running {STOP_TIMEOUT:g} s after SIGTERM (uvicorn gives requests 5 s, then the "
                    "lifespan's shutdown runs); it was killed", *app.log().strip().splitlines()[-3:]]))
        if lint_thread is not None:
            lint_thread.join(30)
        shutil.rmtree(workdir, ignore_errors=True)
    if rep is None and not any(f.kind == "shutdown-hang" for f in findings):
        report.notes.append("the app's process wrote no report after its shutdown")
    if rep is not None:
        if rep.get("error") and not report.error:
            report.error = f"{rep['error']['stage']} failed: {rep['error']['message']}"
        launcher_findings(rep, findings)
        report.tested["files"] = f"{len(rep.get('files', []))} of the app's own"
    if lint_result.get("error"):
        report.notes.append(f"static checks: {lint_result['error']}")
    if "lints" in lint_result:
        static_findings(lint_result["lints"], findings)
        report.tested["static"] = f"{tools_rules()} on {len(rep.get('files', [])) if rep else '?'} file(s)"
    order = {kind: i for i, kind in enumerate(KINDS)}
    findings.sort(key=lambda f: (order.get(f.kind, len(order)), f.operation or ""))
    report.findings = findings
    report.seconds = time.perf_counter() - started
    report.timings["cpu"] = cpu_seconds() - cpu_start
    return report


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the app, schemathesis, ruff)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def tools_rules() -> str:
    from course.probing.tools import RUFF_RULES

    return "ruff " + RUFF_RULES.replace(",", "+")
