"""The site (``make site``) builds from the executed notebooks and every page opens in Chromium with
no error output, no broken image and no broken internal link (tests/tools/site_check.py).

It reads the notebooks the notebook test executed in the same ``make test`` (build/executed,
course.tooling.executed), so ``make test`` runs it in its last phase (marked ``executed``); outside
``make test`` it skips naming the missing notebooks and the command that makes them, and fails under
CI=true. Sphinx lives in .venv-site (``make site-tools``), Playwright in .venv-test, Chromium is
Debian's: each is named when missing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from course.manifest import ROOT, modules
from course.pages import site
from course.processes import stop_tree
from course.server import free_port
from course.tooling import executed as store
from course.tooling.testkit import TEST_TOOLS, need

CHECK = ROOT / "tests" / "tools" / "site_check.py"
TOOL_TIMEOUT = 240  # seconds for Chromium to open every page (about 20 pages; ~15 s measured)

pytestmark = [pytest.mark.slow]


def chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)


def has_playwright() -> bool:
    return (TEST_TOOLS / "python").exists() and subprocess.run(
        [str(TEST_TOOLS / "python"), "-c", "import playwright.sync_api"], capture_output=True).returncode == 0


def serve(folder: Path) -> tuple[subprocess.Popen, str]:
    """A static server on 127.0.0.1 for ``folder``; stop it with stop_tree."""
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # up when it answers
        try:
            httpx.get(base, timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    return server, base


def check_pages(base: str, pages: list[str], browser_path: str, tmp_path: Path) -> dict:
    """Run tests/tools/site_check.py (in .venv-test) on ``pages``; its JSON report."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"base": base, "pages": pages, "chromium": browser_path}))
    result, err = tmp_path / "report.json", tmp_path / "err.txt"
    with result.open("w") as stdout, err.open("w") as stderr:
        tool = subprocess.Popen([str(TEST_TOOLS / "python"), str(CHECK), str(spec)], stdout=stdout,
                                stderr=stderr, stdin=subprocess.DEVNULL, cwd=tmp_path)
    try:
        tool.wait(TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tests/tools/site_check.py did not finish within {TOOL_TIMEOUT} s", pytrace=False)
    finally:
        stop_tree(tool, timeout=5)  # and the Chromium it started, should it still run
    assert tool.returncode == 0, f"site_check.py failed:\n{err.read_text()[-3000:]}"
    return json.loads(result.read_text().strip().splitlines()[-1])


def need_browser() -> str:
    need(has_playwright(), "Playwright (.venv-test)", "make test-tools")
    browser_path = chromium()
    need(browser_path is not None, "Chromium", "apt-get install -y --no-install-recommends chromium")
    return browser_path


def test_the_page_check_can_fail(tmp_path) -> None:
    """site_check.py reports each defect it is there for: an image that does not load, a link to a
    page that does not exist, a link to a missing #fragment, and a notebook's error output."""
    browser_path = need_browser()
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "a.html").write_text(
        '<html><body><img src="missing.png"><a href="b.html#there">ok</a><a href="b.html#nowhere">x</a>'
        '<a href="gone.html">y</a><div class="cell_output"><div class="output traceback">ValueError: boom'
        '</div></div></body></html>')
    (site_dir / "b.html").write_text('<html><body><h1 id="there">B</h1><a href="a.html">back</a></body></html>')
    server, base = serve(site_dir)
    try:
        report = check_pages(base, ["a.html", "b.html"], browser_path, tmp_path)
    finally:
        stop_tree(server, timeout=5)
    a, b = report["pages"]["a.html"], report["pages"]["b.html"]
    assert not a["ok"] and b["ok"], report
    assert [src.rsplit("/", 1)[-1] for src in a["broken_images"]] == ["missing.png"], a
    assert any("ValueError: boom" in e for e in a["errors"]), a
    broken = sorted((x["href"].rsplit("/", 1)[-1], x["why"]) for x in report["broken_links"])
    assert broken == [("b.html#nowhere", "no element #nowhere"), ("gone.html", "HTTP 404")], broken


@pytest.mark.executed
@pytest.mark.timeout(TOOL_TIMEOUT + 400)
def test_site_builds_and_every_page_opens(record_time, tmp_path) -> None:
    need((site.SITE_VENV / "bin" / "python").exists(), "Sphinx and MyST-NB (.venv-site)", "make site-tools")
    browser_path = need_browser()
    executed = store.require()

    out = Path(tempfile.mkdtemp(prefix="course-site-", dir=tmp_path))
    seconds, warnings = site.build(executed, out)
    record_time("site: build (Sphinx + MyST-NB, from build/executed)", seconds)
    assert not warnings, "Sphinx warned while building the site:\n" + "\n".join(warnings[:20])

    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    built = {m.name for m in modules() if executed.get(m.number) is not None}
    missing = sorted(f"{name}.html" for name in built if f"{name}.html" not in pages)
    assert not missing, f"notebooks without a page: {missing}"
    for name in ("index.html", "errors.html", "impact.html", "instructors.html", "old_forms.html", "versions.html"):
        assert name in pages, f"the site has no {name}"
    # the versions it was built with, on the front page and in the banner of every page
    index = (out / "index.html").read_text()
    fastapi = next(e for e in executed.values() if e is not None).meta["libraries"]["fastapi"]
    assert f"fastapi {fastapi}" in index, "the front page does not name the FastAPI version it was built with"
    assert re.search(r"Built from the notebooks as they ran with Python [\d.]+", (out / "errors.html").read_text())

    server, base = serve(out)
    try:
        start = time.perf_counter()
        report = check_pages(base, pages, browser_path, tmp_path)
        record_time(f"site: {len(pages)} pages opened in Chromium", time.perf_counter() - start)
    finally:
        stop_tree(server, timeout=5)

    print(f"\nPlaywright {report['playwright']}, Chromium {report['chromium']}: {len(pages)} pages, "
          f"{report['links_checked']} internal links, "
          f"{sum(r.get('images', 0) for r in report['pages'].values())} images")
    problems = []
    for page, r in report["pages"].items():
        if r.get("broken_images"):
            problems.append(f"{page}: images that did not load: {r['broken_images'][:5]}")
        if r.get("errors"):
            problems.append(f"{page}: error output or failure: {r['errors'][:3]}")
    problems += [f"{b['from']}: broken link {b['href']} ({b['why']})" for b in report["broken_links"][:20]]
    problems += [f"JavaScript error: {e}" for e in report["page_errors"][:5]]
    assert not problems, "\n".join(problems)
    # every plot of every notebook made it: as many images as the executed notebooks have
    for m in modules():
        e = executed.get(m.number)
        if e is None:
            continue
        plots = sum(1 for c in e.nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        shown = report["pages"].get(f"{m.name}.html", {}).get("images", 0)
        assert shown >= plots, f"{m.name}: {plots} plots in the executed notebook, {shown} images on its page"


def test_site_tools_stay_out_of_the_course_environment() -> None:
    """Sphinx and MyST-NB live in .venv-site only: the learner's .venv is what learners install."""
    import importlib.util

    leaked = [name for name in ("sphinx", "myst_nb", "myst_parser", "furo") if importlib.util.find_spec(name)]
    assert not leaked, f"{leaked} importable in the course environment ({sys.prefix}): keep them in .venv-site"
