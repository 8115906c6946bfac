"""The outside tools ``course probe`` runs: schemathesis (every route from the OpenAPI schema) and
ruff (flake8-async and FastAPI rules). Both live in the course's test-tools environment
(``.venv-test``, ``make test-tools``), never in the learner's ``.venv``: they are started as
subprocesses, and their reports are read here (tests/tools/fuzz.py does the same for the course's
own fuzz test).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from course.manifest import ROOT

__all__ = ["TOOLS", "INSTALL", "Case", "FuzzResult", "fuzz", "read_events", "ruff", "RUFF_RULES"]

TOOLS = ROOT / ".venv-test" / "bin"
"""The test-tools environment (course.tooling.testkit.TEST_TOOLS names the same folder)."""
INSTALL = "make test-tools"
RUFF_RULES = "ASYNC,FAST"


def _text(value) -> str | None:
    """A body as schemathesis' NDJSON stores it (plain, JSON, or {"$base64": ...})."""
    if value is None:
        return None
    if isinstance(value, dict) and "$base64" in value:
        raw = base64.b64decode(value["$base64"])
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return repr(raw)
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Case:
    """One request schemathesis sent, and what came back."""

    operation: str          # "GET /items/{item_id}" (the schema's path)
    method: str
    url: str
    body: str | None
    headers: dict
    status: int | None
    response: str
    phase: str
    failed: bool            # a check failed: a 5xx answer


@dataclass
class FuzzResult:
    cases: list[Case] = field(default_factory=list)
    operations: dict[str, int] = field(default_factory=dict)   # operation -> requests sent
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exit_code: int | None = None
    output_tail: str = ""
    version: str | None = None

    @property
    def failures(self) -> list[Case]:
        return [c for c in self.cases if c.failed]

    def answered(self, operation: str, ok) -> list[Case]:
        """Cases of ``operation`` whose status passes ``ok``."""
        return [c for c in self.cases if c.operation == operation and c.status is not None and ok(c.status)]


def read_events(path: Path) -> FuzzResult:
    """The cases, per-operation counts and errors of a schemathesis NDJSON event log."""
    result = FuzzResult()
    if not path.exists():
        result.errors.append("schemathesis wrote no NDJSON report")
        return result
    seen: set = set()
    for line in path.read_text().splitlines():
        event = json.loads(line)
        (kind, data), = event.items()
        if kind == "Initialize":
            result.version = data.get("schemathesis_version")
        if kind in ("NonFatalError", "FatalError"):
            result.errors.append(str(data.get("info", data))[:2000])
        if kind not in ("ScenarioFinished", "FuzzScenarioFinished"):
            continue
        recorder = data.get("recorder") or {}
        for case_id, interaction in (recorder.get("interactions") or {}).items():
            request = interaction.get("request") or {}
            response = interaction.get("response") or {}
            case = ((recorder.get("cases") or {}).get(case_id) or {}).get("value") or {}
            method = request.get("method") or case.get("method", "?")
            operation = f"{case.get('method', method).upper()} {case.get('path', '?')}"
            result.operations[operation] = result.operations.get(operation, 0) + 1
            failed = any(c.get("status") == "failure" for c in (recorder.get("checks") or {}).get(case_id, []))
            body = _text(request.get("body"))
            key = (method, request.get("uri"), body)
            if failed and key in seen:  # schemathesis replays a failing case to confirm it
                continue
            seen.add(key)
            result.cases.append(Case(
                operation=operation, method=method, url=request.get("uri", ""), body=body,
                headers={k: v[-1] if isinstance(v, list) else v for k, v in (request.get("headers") or {}).items()},
                status=response.get("status_code"), response=(_text(response.get("content")) or "")[:500],
                phase=str(data.get("phase")), failed=failed))
    return result


def fuzz(url: str, workdir: Path, *, methods: list[str] | None, max_examples: int, timeout: float,
         header: str, phases: str = "examples,coverage,fuzzing,stateful") -> FuzzResult:
    """``schemathesis run URL/openapi.json``: fail on any 5xx (``not_a_server_error``), deterministic
    (the same cases every run, no example database), one worker; ``methods``: only those (None: all).
    ``header`` (``name:value``) goes with every request."""
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / "events.ndjson"
    cmd = [str(TOOLS / "schemathesis"), "run", url.rstrip("/") + "/openapi.json",
           "--checks", "not_a_server_error", "--max-examples", str(max_examples),
           "--generation-deterministic", "--workers", "1",
           "--request-timeout", "10", "--no-color", "--header", header,
           "--phases", phases,
           "--report", "ndjson", "--report-ndjson-path", str(events)]
    for method in methods or []:
        cmd += ["--include-method", method]
    start = time.perf_counter()
    out = workdir / "schemathesis.out"
    with out.open("w") as stdout:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=stdout, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            from course.processes import stop_tree

            stop_tree(proc, timeout=2)
    result = read_events(events)
    result.seconds = time.perf_counter() - start
    result.exit_code = code
    result.output_tail = out.read_text(errors="replace")[-3000:]
    if code is None:
        result.errors.append(f"schemathesis did not finish within {timeout:g} s (its cases so far are used)")
    return result


@dataclass
class Lint:
    code: str
    message: str
    file: str
    line: int
    source: str


def ruff(files: list[str], root: Path, timeout: float = 30) -> tuple[list[Lint], str | None]:
    """ruff's ASYNC and FAST rules on ``files`` (no configuration of the project's: the same rules
    everywhere). Returns the findings and an error text (None: ruff ran)."""
    if not files:
        return [], None
    cmd = [str(TOOLS / "ruff"), "check", "--isolated", "--no-cache", "--select", RUFF_RULES,
           "--output-format", "json", "--exit-zero", "--target-version", "py311", *files]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"ruff did not run: {exc}"
    if done.returncode != 0:
        return [], f"ruff failed ({done.returncode}): {done.stderr.strip()[-500:]}"
    found = []
    for item in json.loads(done.stdout or "[]"):
        path = Path(item["filename"])
        row = item["location"]["row"]
        try:
            source = path.read_text().splitlines()[row - 1].strip()
        except (OSError, IndexError):
            source = ""
        try:
            shown = str(path.relative_to(root))
        except ValueError:
            shown = str(path)
        found.append(Lint(item["code"], item["message"], shown, row, source))
    return found, None
