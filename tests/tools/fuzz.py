"""Fuzz running HTTP apps from their OpenAPI schema with schemathesis; print one JSON report.

Runs in the test-tools environment (.venv-test, ``make test-tools``), never in the learner's
.venv. tests/test_fuzz.py starts the apps and runs:

    .venv-test/bin/python tests/tools/fuzz.py SPEC.json

SPEC (JSON):
    {"workdir": "/tmp/...",           reports and schemathesis' own files go here
     "max_examples": 50,              per operation and phase (schemathesis --max-examples)
     "parallel": 2,                   targets fuzzed at the same time
     "deadline": 150,                 seconds for every target together (each run is stopped then)
     "targets": [{"name": "...", "url": "http://127.0.0.1:PORT"}, ...]}

Each target gets ``schemathesis run URL/openapi.json`` with the check ``not_a_server_error`` (a
5xx answer is a failure), in deterministic mode (the same cases every run, no example database),
one worker, every phase (examples, coverage, fuzzing, stateful).

The report, one line on stdout:
    {"schemathesis": version, "cpu_seconds": CPU time of all schemathesis runs,
     "targets": {name: {"exit_code", "seconds",
                        "cases"        test cases schemathesis generated (its own count),
                        "requests"     {operation: requests sent},
                        "phases"       {phase: status},
                        "failures"     [{"operation", "check", "phase", "method", "url", "body",
                                         "status", "response"}] (one per failing case),
                        "errors"       [text] (schemathesis could not test something),
                        "output_tail"  the end of schemathesis' own output}}}
"""

from __future__ import annotations

import base64
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _text(value) -> str | None:
    """A request or response body as the NDJSON report stores it (plain or {"$base64": ...})."""
    if value is None:
        return None
    if isinstance(value, dict) and "$base64" in value:
        raw = base64.b64decode(value["$base64"])
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return repr(raw)
    return value if isinstance(value, str) else json.dumps(value)


def read_events(path: Path) -> tuple[dict[str, int], list[dict], list[str]]:
    """Requests per operation, failing cases and errors from schemathesis' NDJSON event log."""
    requests: dict[str, int] = {}
    failures: list[dict] = []
    errors: list[str] = []
    seen: set = set()
    if not path.exists():
        return requests, failures, ["schemathesis wrote no NDJSON report"]
    for line in path.read_text().splitlines():
        event = json.loads(line)
        (kind, data), = event.items()
        if kind == "NonFatalError" or kind == "FatalError":
            errors.append(str(data.get("info", data))[:2000])
        if kind not in ("ScenarioFinished", "FuzzScenarioFinished"):
            continue
        recorder = data.get("recorder") or {}
        for case_id, interaction in (recorder.get("interactions") or {}).items():
            request = interaction.get("request") or {}
            # Label by the operation the case belongs to (stateful scenarios mix several).
            case = ((recorder.get("cases") or {}).get(case_id) or {}).get("value") or {}
            operation = f"{case.get('method', request.get('method'))} {case.get('path', '?')}"
            requests[operation] = requests.get(operation, 0) + 1
            for check in (recorder.get("checks") or {}).get(case_id, []):
                if check.get("status") != "failure":
                    continue
                response = interaction.get("response") or {}
                key = (request.get("method"), request.get("uri"), _text(request.get("body")))
                if key in seen:  # schemathesis replays a failing case to confirm it
                    continue
                seen.add(key)
                failures.append({
                    "operation": operation,
                    "check": check.get("name"),
                    "phase": data.get("phase"),
                    "method": request.get("method"),
                    "url": request.get("uri"),
                    "body": _text(request.get("body")),
                    "status": response.get("status_code"),
                    "response": (_text(response.get("content")) or "")[:500],
                })
    return requests, failures, errors


def fuzz(target: dict, spec: dict, deadline: float) -> dict:
    out = Path(spec["workdir"]) / target["name"]
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(SCHEMATHESIS), "run", target["url"].rstrip("/") + "/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", str(spec.get("max_examples", 50)),
        "--generation-deterministic",
        "--workers", "1",
        "--request-timeout", "10",
        "--no-color",
        "--report", "json,ndjson",
        "--report-json-path", str(out / "report.json"),
        "--report-ndjson-path", str(out / "events.ndjson"),
    ]
    start = time.perf_counter()
    try:
        run = subprocess.run(cmd, cwd=out, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=max(5.0, deadline - time.monotonic()))
        code, output = run.returncode, run.stdout + run.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = None, f"schemathesis did not finish within {exc.timeout} s\n{exc.stdout or ''}"
    seconds = time.perf_counter() - start
    try:
        summary = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        summary = {}
    requests, failures, errors = read_events(out / "events.ndjson")
    errors += [str(e)[:2000] for e in summary.get("errors", [])]
    return {
        "exit_code": code,
        "seconds": round(seconds, 2),
        "cases": (summary.get("test_cases") or {}).get("generated"),
        "requests": requests,
        "phases": {name: p.get("status") for name, p in (summary.get("phases") or {}).items()},
        "failures": failures,
        "errors": errors,
        "output_tail": output[-4000:],
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    deadline = time.monotonic() + spec.get("deadline", 150)
    with ThreadPoolExecutor(max_workers=spec.get("parallel", 2)) as pool:
        results = dict(zip([t["name"] for t in spec["targets"]],
                           pool.map(lambda t: fuzz(t, spec, deadline), spec["targets"])))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"schemathesis": version("schemathesis"), "targets": results,
                      "cpu_seconds": round(children.ru_utime + children.ru_stime, 1)}))


if __name__ == "__main__":
    main()
