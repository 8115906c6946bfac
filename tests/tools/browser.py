"""Run notebooks through JupyterLab's own UI in headless Chromium; print one JSON report.

Runs in the test-tools environment (.venv-test, ``make test-tools``), never in the learner's
.venv. tests/test_browser.py starts JupyterLab and runs:

    .venv-test/bin/python tests/tools/browser.py SPEC.json

SPEC (JSON):
    {"base": "http://127.0.0.1:PORT", "token": "...", "chromium": "/usr/bin/chromium",
     "notebooks": ["notebooks/00_start_here.ipynb", ...],   paths under JupyterLab's root
     "artifacts": "/tmp/...",        screenshots of failures go here
     "open_timeout": 60,             seconds until a notebook shows its kernel as idle
     "run_timeout": 120,             seconds for Run All Cells to finish
     "idle_seconds": 3}              the kernel must stay idle this long to count as done

For each notebook, as a learner would: open it in a fresh workspace, wait for its kernel, click
the menu Run, then Run All Cells, wait until the kernel stays idle, press Ctrl+S, wait until the
document is saved, shut its kernel down. The caller judges the SAVED file; this script reports:

    {"playwright": version, "chromium": version,
     "notebooks": {path: {"ok": bool, "stage": where it stopped, "error": text or null,
                          "open_seconds", "run_seconds", "save_seconds", "screenshot": path or null}},
     "page_errors": [uncaught JavaScript errors], "console_errors": [console.error lines]}

JupyterLab 4 renders cells lazily, so this script never counts cells in the DOM; it reads the
kernel's status from the execution indicator and the document's state from ``window.jupyterapp``
(JupyterLab started with ``--LabApp.expose_app_in_browser=True``).
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]
# The current notebook panel's kernel status and whether its document has unsaved changes.
STATE_JS = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.sessionContext || !w.context) return {ready: false};
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  return {ready: true, path: w.context.path, status: kernel ? kernel.status : 'none',
          dirty: w.context.model.dirty};
}"""


def state(page) -> dict:
    return page.evaluate(STATE_JS)


# Whether Run All is over: every code cell that has source ran, or one of them shows an error (Run All
# stops there). An idle kernel alone is not enough: once, on a loaded machine, notebook 00's kernel sat
# idle for 3 s after its third cell while the others had not run yet, and the notebook was saved so.
ALL_RAN_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.widgets) return false;
  const code = w.content.widgets.map(c => c.model.toJSON()).filter(c => c.cell_type === 'code' &&
    [].concat(c.source).join('').trim());
  return code.some(c => (c.outputs || []).some(o => o.output_type === 'error')) ||
    code.every(c => c.execution_count !== null && c.execution_count !== undefined);
}"""


def wait_idle(page, path: str, timeout: float, idle_seconds: float, need_busy: bool, all_ran: bool = False) -> float:
    """Wait until the notebook's kernel has been idle for idle_seconds in a row (after being
    busy at least once, when need_busy; and, with all_ran, once every code cell ran or one failed).
    Returns the seconds waited."""
    start = time.monotonic()
    idle_since, seen_busy = None, not need_busy
    while True:
        s = state(page)
        if s.get("ready") and s.get("path") == path:
            if s["status"] == "idle" and (not all_ran or page.evaluate(ALL_RAN_JS)):
                idle_since = idle_since or time.monotonic()
                # Run All can be so quick that busy is never observed: also accept a long idle.
                if time.monotonic() - idle_since >= (idle_seconds if seen_busy else 3 * idle_seconds):
                    return time.monotonic() - start
            else:
                idle_since = None
                seen_busy = seen_busy or s["status"] == "busy"
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"the kernel did not stay idle{' with every cell run' if all_ran else ''} within {timeout:g} s "
                               f"(last state: {s})")
        time.sleep(0.25)


# How many code cells of the current notebook have started or finished running ([*] or [n]).
STARTED_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.widgets) return 0;
  return w.content.widgets.filter(c => c.model.type === 'code' &&
    (c.model.executionCount !== null || c.node.querySelector('.jp-InputPrompt')?.textContent.includes('*'))).length;
}"""


def click_run_all(page, attempts: int = 3, wait: float = 10.0) -> int:
    """Run -> Run All Cells, until a cell has started (or the kernel went busy). A click made while
    Lab is still wiring the kernel to the panel can be ignored (the command is disabled then): seen
    on a cold start, where the notebook was then saved with no cell run. Returns the clicks made."""
    for attempt in range(1, attempts + 1):
        page.locator(".jp-Notebook:visible").first.click(position={"x": 5, "y": 5})
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if page.evaluate(STARTED_JS) > 0 or state(page).get("status") == "busy":
                return attempt
            time.sleep(0.2)
        page.keyboard.press("Escape")  # close the menu if it is still open
    raise TimeoutError(f"Run All Cells started no cell after {attempts} clicks")


def run_notebook(page, spec: dict, path: str, result: dict) -> None:
    base, token = spec["base"], spec["token"]
    # Lab restores the last workspace; a fresh one opens exactly this notebook.
    workspace = f"browser-test-{uuid.uuid4().hex[:8]}"
    result["stage"] = "open"
    start = time.monotonic()
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{path}?reset&token={token}", wait_until="domcontentloaded")
    page.wait_for_function(f"() => {{ const s = ({STATE_JS})(); return s.ready && s.path === {json.dumps(path)}; }}",
                           timeout=spec.get("open_timeout", 60) * 1000, polling=250)
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                           timeout=spec.get("open_timeout", 60) * 1000)
    result["open_seconds"] = round(time.monotonic() - start, 2)

    result["stage"] = "run all"
    start = time.monotonic()
    result["run_all_clicks"] = click_run_all(page)
    wait_idle(page, path, spec.get("run_timeout", 120), spec.get("idle_seconds", 3), need_busy=True, all_ran=True)
    result["run_seconds"] = round(time.monotonic() - start, 2)

    result["stage"] = "save"
    start = time.monotonic()
    page.locator(".jp-Notebook:visible").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_function(f"() => {{ const s = ({STATE_JS})(); return s.ready && s.dirty === false; }}",
                           timeout=20_000, polling=250)
    result["save_seconds"] = round(time.monotonic() - start, 2)

    result["stage"] = "shut down the kernel"
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    result["stage"] = "done"
    result["ok"] = True


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    artifacts = Path(spec["artifacts"])
    report: dict = {"playwright": version("playwright"), "notebooks": {}, "page_errors": [], "console_errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=spec["chromium"], headless=True, args=CHROMIUM_ARGS)
        report["chromium"] = browser.version
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda exc: report["page_errors"].append(str(exc)[:500]))
            page.on("console", lambda msg: msg.type == "error" and report["console_errors"].append(msg.text[:500]))
            for path in spec["notebooks"]:
                result = {"ok": False, "stage": None, "error": None, "screenshot": None}
                report["notebooks"][path] = result
                try:
                    run_notebook(page, spec, path, result)
                except (PlaywrightError, TimeoutError) as exc:
                    result["error"] = f"{type(exc).__name__}: {exc}"[:3000]
                    shot = artifacts / f"{Path(path).stem}-{result['stage'].replace(' ', '-')}.png"
                    try:
                        artifacts.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(shot), full_page=True)
                        result["screenshot"] = str(shot)
                    except PlaywrightError as shot_exc:
                        result["error"] += f"\n(no screenshot: {shot_exc})"
        finally:
            browser.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
