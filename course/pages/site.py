"""``make site``: the course as a static website, for readers who browse before they run.

Sphinx with MyST-NB (``.venv-site``, requirements-site.txt), built from the executed notebooks the
notebook test saved (course.tooling.executed), never from a second execution: ``make test`` builds
it in its last phase in seconds, and ``make site`` outside ``make test`` first executes only the
notebooks whose executed copy is missing or stale.

Why Sphinx + MyST-NB and not Jupyter Book: Jupyter Book 2 (the current one) is a front end to
mystmd, a Node.js tool whose HTML build fetches its theme from the web at build time, which neither
this machine nor a locked-down CI can do, and whose output changes with that theme; Jupyter Book 1
is itself Sphinx + MyST-NB under a configuration layer of its own, pinned to older Sphinx. Sphinx +
MyST-NB is pure Python, pinned like the rest, offline, and renders the saved outputs as they are
(``nb_execution_mode = "off"``). The theme is Furo (one package, no JavaScript framework).

Pages (flat: every page at the site's root, so every relative link works from every page):
``index`` (the module table, built from modules.yml), one page per notebook, the error index, the
impact table and the instructor guide (rendered from THIS run's executed notebooks: today's figures
and answers), the old forms (OLD_FORMS.md) and ``versions`` (what it was built with; a banner on
every page says it too).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from course.manifest import ROOT, modules

__all__ = ["SITE_VENV", "OUT", "stage", "build", "main"]

SITE_VENV = ROOT / ".venv-site"
SRC = ROOT / "build" / "site-src"
OUT = ROOT / "build" / "site"

CONF = '''
project = "FastAPI in Production"
author = "the course's maintainers"
extensions = ["myst_nb"]
html_theme = "furo"
html_title = "FastAPI in Production"
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {{"announcement": {banner!r}}}
nb_execution_mode = "off"  # the outputs are the notebook test's, saved in build/executed
nb_merge_streams = True
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]
exclude_patterns = ["_build"]
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]
'''

SHOWN_LIBRARIES = ("fastapi", "starlette", "uvicorn", "pydantic", "sqlalchemy", "httpx", "pytest-asyncio",
                   "celery")


def _cr(text: str) -> str:
    """A progress bar's carriage returns as a terminal shows them: each line's last state."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _notebook_for_site(nb) -> dict:
    """The executed copy, ready to render: progress bars collapsed, the course's metadata kept."""
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
                out["text"] = _cr(text)
    return nb


def _site_links(text: str) -> str:
    """A repository page's links as the site's: notebooks are pages at the root; OLD_FORMS.md's
    HTML anchors become MyST targets."""
    text = re.sub(r"\]\((?:\.\./)?notebooks/([0-9]{2}_\w+)\.ipynb", r"](\1.ipynb", text)
    text = re.sub(r'<a id="([\w-]+)"></a>\s*\n(\s*\n)*', r"(\1)=\n", text)
    return text


def _versions(executed: dict) -> dict:
    meta = next((e.meta for e in executed.values() if e is not None), {})
    site_tools = {}
    try:
        out = subprocess.run([str(SITE_VENV / "bin" / "python"), "-c",
                              "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
                              "('sphinx', 'myst-nb', 'myst-parser', 'furo')}))"],
                             capture_output=True, text=True, timeout=30)
        site_tools = json.loads(out.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    dates = sorted(e.meta.get("executed_at", "") for e in executed.values() if e is not None)
    return {"python": meta.get("python"), "libraries": meta.get("libraries", {}), "site_tools": site_tools,
            "executed": (dates[0][:16].replace("T", " "), dates[-1][:16].replace("T", " ")) if dates else None,
            "services_required": all(e.meta.get("services_required") for e in executed.values() if e is not None),
            "built": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _index(executed: dict, versions: dict) -> str:
    rows = ["| | module | the failure you will see | lesson + exercise |", "|---|---|---|---|"]
    for m in modules():
        minutes = f"{m.lesson_minutes} + {m.exercise_minutes} min" if m.graded else f"{m.lesson_minutes} min"
        title = f"[{m.title}]({m.name}.ipynb)" if executed.get(m.number) is not None else f"{m.title} (not built)"
        rows.append(f"| {m.number} | {title} | {m.failure} | {minutes} |")
    pages = [m.name for m in modules() if executed.get(m.number) is not None]
    libs = versions["libraries"]
    shown = ", ".join(f"{name} {libs[name]}" for name in SHOWN_LIBRARIES if name in libs)
    return "\n".join([
        "# FastAPI in Production",
        "",
        "A hands-on course on what breaks when real traffic and real test suites hit a FastAPI service, and how "
        "to turn existing Python code into a service that holds. Every failure is **reproduced for real**: a real "
        "uvicorn, real concurrent requests, a real database, the real error text, then the fix, measured.",
        "",
        "These pages show each notebook as it ran, outputs and plots included. To run them yourself: clone the "
        "course, `make lab`, and open `notebooks/00_start_here.ipynb`.",
        "",
        f"Built {versions['built']} from the notebooks as they ran on "
        + (f"{versions['executed'][0]} to {versions['executed'][1]} UTC" if versions["executed"] else "?")
        + f", with Python {versions['python']}, {shown} ([every version](versions.md)).",
        "",
        "## The modules",
        "",
        *rows,
        "",
        "## For readers and instructors",
        "",
        "- [The error index](errors.md): a message from production, and the section that reproduces it.",
        "- [The brief's claims, measured](impact.md): four promises beside this run's figures.",
        "- [Old forms and today's forms](old_forms.md): what you meet online, checked against the pinned versions.",
        "- [The instructor guide](instructors.md): schedules, checkpoint answers, where learners stumble, the room.",
        "",
        "```{toctree}",
        ":hidden:",
        ":caption: Modules",
        "",
        *pages,
        "```",
        "",
        "```{toctree}",
        ":hidden:",
        ":caption: Reference",
        "",
        "errors",
        "impact",
        "old_forms",
        "instructors",
        "versions",
        "```",
        "",
    ])


def _versions_page(versions: dict) -> str:
    libs = versions["libraries"]
    rows = ["| package | version |", "|---|---|", *(f"| {k} | {v} |" for k, v in sorted(libs.items()))]
    tools = ["| package | version |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in sorted(versions["site_tools"].items()))]
    return "\n".join([
        "# Versions",
        "",
        f"The notebooks on this site ran with Python {versions['python']} and the course's pinned packages "
        "(`requirements.txt`), as installed in the environment that ran them:",
        "",
        *rows,
        "",
        "Sections that need PostgreSQL, Redis or RabbitMQ "
        + ("ran (the run required them)." if versions["services_required"] else
           "ran where the service answered, and were skipped (with a message) where it did not."),
        "",
        f"Built {versions['built']} with:",
        "",
        *tools,
        "",
    ])


def stage(executed: dict, src: Path = SRC) -> dict:
    """Write the site's sources into ``src``: returns the versions it was built with."""
    from course.pages import errors, impact, instructors, strip_embedded

    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    versions = _versions(executed)
    libs = versions["libraries"]
    banner = (f"Built from the notebooks as they ran with Python {versions['python']}, "
              + ", ".join(f"{n} {libs[n]}" for n in ("fastapi", "pydantic", "sqlalchemy") if n in libs)
              + ' · <a href="versions.html">every version</a>')
    (src / "conf.py").write_text(CONF.format(banner=banner))
    (src / "index.md").write_text(_index(executed, versions))
    (src / "versions.md").write_text(_versions_page(versions))
    for number, e in executed.items():
        if e is not None:
            (src / f"{e.module.name}.ipynb").write_text(json.dumps(_notebook_for_site(json.loads(
                json.dumps(e.nb))), ensure_ascii=False))
    # today's figures and answers: the pages rendered from this run, not the committed ones
    pages = {"errors.md": errors.render(errors.measure(executed)),
             "impact.md": impact.render(impact.measure(executed)),
             "instructors.md": instructors.render(instructors.measure(executed)),
             "old_forms.md": (ROOT / "OLD_FORMS.md").read_text()}
    for name, text in pages.items():
        (src / name).write_text(_site_links(strip_embedded(text)))
    return versions


def build(executed: dict, out: Path = OUT, *, quiet: bool = True) -> tuple[float, list[str]]:
    """Stage and build the site into ``out``; returns (seconds, Sphinx's warnings)."""
    python = SITE_VENV / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} is missing: run `make site-tools`")
    start = time.perf_counter()
    stage(executed)
    if out.exists():
        shutil.rmtree(out)
    warnings_file = SRC.parent / "site-warnings.txt"
    cmd = [str(python), "-m", "sphinx", "-b", "html", "-j", "auto", "-w", str(warnings_file), "-E",
           *(["-q"] if quiet else []), str(SRC), str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"sphinx failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    shutil.rmtree(out / ".doctrees", ignore_errors=True)
    warnings = [w for w in warnings_file.read_text().splitlines() if w.strip()] if warnings_file.exists() else []
    return time.perf_counter() - start, warnings


def main(argv: list[str] | None = None) -> int:
    from course.tooling.executed import ensure

    argv = sys.argv[1:] if argv is None else argv
    executed = ensure()  # executes only the notebooks whose saved copy is missing or stale
    seconds, warnings = build(executed)
    for w in warnings:
        print(w)
    print(f"site built in {seconds:.1f} s: {OUT / 'index.html'}" + (f" ({len(warnings)} warnings)" if warnings else ""))
    return 1 if warnings and "--strict" in argv else 0


if __name__ == "__main__":
    sys.exit(main())
