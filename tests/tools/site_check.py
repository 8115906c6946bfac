"""Open every page of the built site in headless Chromium; print one JSON report.

Runs in the test-tools environment (.venv-test, ``make test-tools``), never in the learner's .venv.
tests/test_site.py builds the site, serves it on 127.0.0.1 and runs:

    .venv-test/bin/python tests/tools/site_check.py SPEC.json

SPEC (JSON): {"base": "http://127.0.0.1:PORT/", "pages": ["index.html", ...], "chromium": "/usr/bin/chromium"}

For each page, as a reader's browser shows it: every <img> loaded (complete, with a natural width);
no notebook output of type error (MyST-NB renders it as ``.output.traceback``/``.output.error``);
every link to the site itself answers 200, and when it has a #fragment, the target page has an
element with that id. Reports:

    {"playwright": version, "chromium": version, "pages": {page: {"ok": bool, "seconds": s,
     "images": n, "broken_images": [...], "errors": [...], "links": n}},
     "broken_links": [{"from": page, "href": ..., "why": ...}], "page_errors": [...]}
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urldefrag, urljoin

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]
PAGE_JS = """() => ({
  images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
  errors: Array.from(document.querySelectorAll('.output.traceback, .output.error, .cell_output .traceback'))
            .map(e => e.innerText.slice(0, 300)),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
})"""


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    base = spec["base"]
    report: dict = {"playwright": version("playwright"), "pages": {}, "broken_links": [], "page_errors": []}
    ids: dict[str, set[str]] = {}
    links: list[tuple[str, str]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=spec["chromium"], headless=True, args=CHROMIUM_ARGS)
        report["chromium"] = browser.version
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("pageerror", lambda exc: report["page_errors"].append(f"{page.url}: {str(exc)[:300]}"))
            for path in spec["pages"]:
                start = time.monotonic()
                result: dict = {"ok": False}
                report["pages"][path] = result
                try:
                    response = page.goto(urljoin(base, path), wait_until="load", timeout=30_000)
                    if response is None or response.status != 200:
                        result["errors"] = [f"HTTP {response.status if response else 'no response'}"]
                        continue
                    # lazy images count too: scroll them into view, then wait for each to settle
                    page.evaluate("() => Array.from(document.images).forEach(i => { i.loading = 'eager'; })")
                    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)",
                                           timeout=15_000)
                    found = page.evaluate(PAGE_JS)
                except PlaywrightError as exc:
                    result["errors"] = [f"{type(exc).__name__}: {str(exc)[:300]}"]
                    continue
                url = urldefrag(urljoin(base, path))[0]
                ids[url] = set(found["ids"])
                broken = [i["src"] for i in found["images"] if not i["ok"]]
                result.update(images=len(found["images"]), broken_images=broken,
                              errors=found["errors"], links=len(found["links"]),
                              seconds=round(time.monotonic() - start, 2))
                result["ok"] = not result["broken_images"] and not result["errors"]
                links += [(path, href) for href in found["links"] if href.startswith(base)]
            # every internal link: the target answers, and its #fragment exists there
            checked: dict[str, int] = {}
            for source, href in links:
                target, fragment = urldefrag(href)
                if target not in ids and target not in checked:
                    try:
                        checked[target] = page.request.get(target, timeout=15_000).status
                    except PlaywrightError as exc:
                        checked[target] = 0
                        report["broken_links"].append({"from": source, "href": href, "why": str(exc)[:200]})
                        continue
                status = 200 if target in ids else checked.get(target, 0)
                if status != 200:
                    report["broken_links"].append({"from": source, "href": href, "why": f"HTTP {status}"})
                elif fragment and target in ids and fragment not in ids[target]:
                    report["broken_links"].append({"from": source, "href": href, "why": f"no element #{fragment}"})
        finally:
            browser.close()
    report["links_checked"] = len(links)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
