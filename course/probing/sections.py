"""Which notebook section teaches each finding of ``course probe``.

Every finding kind (and every ruff rule the probe runs) names a module and the start of one of its
notebook's ``## `` headings, without its number and minutes ("Pool exhaustion" for
``## 2 · Pool exhaustion (10 min)``). :func:`section` reads the heading from the notebook as it is
now, so a section that moves or grows its title is still found; course/tests/test_probe.py fails
when one named here has gone, so a renamed section is renamed here too.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from course.manifest import ROOT

__all__ = ["KINDS", "Kind", "Section", "section", "rule_kind", "server_error_kind"]


@dataclass(frozen=True)
class Kind:
    title: str     # what was found, in a few words
    module: str    # the module that teaches it
    heading: str   # the start of its notebook's "## " heading, without the number and the minutes
    also: tuple[tuple[str, str], ...] = ()  # other sections with another cause of the same symptom


KINDS: dict[str, Kind] = {
    # at import
    "import-engine": Kind("database engine created at import", "01", "Who closes the connections?"),
    "import-client": Kind("HTTP client created at import", "02", "A cached client: who closes it?"),
    "import-settings": Kind("settings read at import", "02", "Settings: parsed on every request, or once"),
    "import-thread": Kind("thread started at import", "01", "Who closes the connections?"),
    "import-process": Kind("process started at import", "02", "Nothing left behind"),
    "import-connection": Kind("connection opened at import", "01", "Who closes the connections?"),
    # while serving
    "request-engine": Kind("a database engine per request", "01", "Who closes the connections?"),
    "request-client": Kind("an HTTP client per request", "02", "An HTTP client per request, or one for the app"),
    "request-settings": Kind("settings parsed on every request", "02",
                             "Settings: parsed on every request, or once"),
    "server-error": Kind("a 500 for a request", "05", "500s, and 200s that should never happen"),
    "nonfinite-500": Kind("a 500 for NaN or Infinity in a JSON body", "05", "A generated batch of bad requests"),
    "surrogate-500": Kind("a 500 for a lone surrogate in a JSON body", "05",
                          "A generated batch of bad requests"),
    "error-after-response": Kind("an exception after the response was sent", "02", "Cleaning up on every path"),
    "background-error": Kind("a background task raised after the response", "08",
                             "BackgroundTasks: after the response"),
    "loop-lag": Kind("the event loop blocked", "06", "One blocking call stops every request"),
    "burst-errors": Kind("requests fail under a burst", "01", "Pool exhaustion"),
    "burst-queueing": Kind("requests wait for each other under a burst", "01", "Two fixes and a trap",
                           also=(("06", "Thread pools: no blocking, but a cap"),)),
    "patch-overwrite": Kind("a one-field PATCH changed other fields", "03", "A one-field PATCH"),
    "patch-error": Kind("a one-field PATCH answered 5xx", "03", "A one-field PATCH"),
    # at shutdown
    "shutdown-connections": Kind("database connections open after shutdown", "01", "Who closes the connections?"),
    "shutdown-client": Kind("HTTP client never closed", "02", "A cached client: who closes it?"),
    "shutdown-sockets": Kind("TCP connections open after shutdown", "02", "A cached client: who closes it?"),
    "shutdown-threads": Kind("threads still running after shutdown", "01", "Who closes the connections?"),
    "shutdown-processes": Kind("child processes left after shutdown", "02", "Nothing left behind"),
    "shutdown-files": Kind("files open after shutdown", "01", "Who closes the connections?"),
    "shutdown-tasks": Kind("asyncio tasks still running at shutdown", "08",
                           "A crash, a deploy: kill -9 and SIGTERM"),
    "shutdown-hang": Kind("the app did not stop on SIGTERM", "08", "A crash, a deploy: kill -9 and SIGTERM"),
    "shutdown-error": Kind("the lifespan's shutdown raised", "02", "Nothing left behind"),
}

# ruff rules: flake8-async (ASYNC) and FastAPI (FAST). A rule not listed takes its prefix's entry.
RULES: dict[str, tuple[str, str]] = {
    "ASYNC": ("06", "One blocking call stops every request"),
    "ASYNC210": ("06", "A blocking HTTP client"),
    "ASYNC212": ("06", "A blocking HTTP client"),
    "ASYNC220": ("06", "The other blocking calls and their replacements"),
    "ASYNC221": ("06", "The other blocking calls and their replacements"),
    "ASYNC222": ("06", "The other blocking calls and their replacements"),
    "ASYNC230": ("06", "The other blocking calls and their replacements"),
    "ASYNC240": ("06", "The other blocking calls and their replacements"),
    "ASYNC250": ("06", "The other blocking calls and their replacements"),
    "FAST": ("05", "The production version"),
    "FAST003": ("05", "The function, and the endpoint typed in five minutes"),
}

# A server error's text points to a more specific section than "a 500".
SERVER_ERRORS: list[tuple[str, str, str]] = [
    ("MissingGreenlet", "01", "After the commit: `MissingGreenlet`"),
    ("QueuePool limit", "01", "Pool exhaustion"),
    ("NOT NULL constraint failed", "03", "A one-field PATCH"),
    # a session left open after an endpoint raised keeps SQLite's write lock: the next write waits, then fails
    ("database is locked", "02", "Cleaning up on every path"),
]


@dataclass(frozen=True)
class Section:
    module: str
    heading: str          # as the notebook writes it now, number included ("2 · Pool exhaustion")
    notebook: str         # notebooks/NN_topic.ipynb
    found: bool           # False: no heading of the notebook starts so (any more)

    def __str__(self) -> str:
        return f"{self.module} · {self.heading}"


@functools.lru_cache(maxsize=None)
def headings(module: str) -> tuple[str, tuple[str, ...]]:
    """(notebook path relative to the course, its "## " headings without "## " and the minutes)."""
    found = sorted((ROOT / "notebooks").glob(f"{module}_*.ipynb"))
    if not found:
        return f"notebooks/{module}_*.ipynb", ()
    cells = json.loads(found[0].read_text())["cells"]
    texts = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            if line.startswith("## "):
                texts.append(re.sub(r"\s*\(\d+ min\)\s*$", "", line[3:]).strip())
    return str(found[0].relative_to(ROOT)), tuple(texts)


def section(module: str, start: str) -> Section:
    """The section of notebook ``module`` whose heading, after its number, starts with ``start``."""
    notebook, texts = headings(module)
    for text in texts:
        if re.sub(r"^\d+ · ", "", text).startswith(start):
            return Section(module, text, notebook, True)
    return Section(module, start, notebook, False)


def rule_kind(code: str) -> Kind:
    """A ruff rule as a finding kind (its section: the rule's own, else its prefix's)."""
    prefix = re.match(r"[A-Z]+", code).group(0)
    module, heading = RULES.get(code) or RULES[prefix]
    return Kind(f"ruff {code}", module, heading)


def server_error_kind(text: str, default: str = "server-error") -> Kind:
    kind = KINDS[default]
    for needle, module, heading in SERVER_ERRORS:
        if needle in text:
            return Kind(kind.title, module, heading)
    return kind
