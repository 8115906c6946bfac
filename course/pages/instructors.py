"""The instructor guide: workshop/INSTRUCTORS.md, from the template beside this file (the prose)
and the course's sources (the generated parts):

* modules.yml: titles, minutes, prerequisites, what the learner edits, the failure;
* each notebook: its questions and objectives (first cell), sections and minutes, the demo files it
  shows, the short cells worth typing, the cells that run the harness, the services a section needs,
  the checkpoints (question, the form of the answer, the notebook's explanation after it) and the
  challenge (with its folded answer);
* checks/NN/mistakes/*/mistake.yml: where learners stumble, with the expectation that catches each
  (the first line of the check's docstring) and the TODO's hint (checks/NN/HINTS.md);
* workshop/sizing.json (written by ``make test-workshop``): the room's sizing;
* the executed notebooks (measured): each checkpoint's answer (``course.reveal``'s "Measured:" line),
  how long each section's cells ran, and the fingerprint of each notebook the answers came from.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

from course.manifest import ROOT, Module, modules
from course.pages import embed

__all__ = ["measure", "render", "compare", "PAGE", "SIZING"]

TEMPLATE = Path(__file__).with_name("instructors.md")
PAGE = ROOT / "workshop" / "INSTRUCTORS.md"
SIZING = ROOT / "workshop" / "sizing.json"
BREAK_AFTER = 50  # minutes of teaching before a 10-minute break
BREAK = 10
DAY = 390  # minutes of a teaching day (6.5 h without lunch)
ROOM = 30  # learners the sizing is worked out for


# ---------------------------------------------------------------- reading the sources


def expectations(module: Module) -> dict[str, tuple[str, list[int]]]:
    """test name -> (the expectation as the learner reads it, the TODOs its expect(...) calls name)."""
    if not module.check_suite.exists():
        return {}
    tree = ast.parse(module.check_suite.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            doc = (ast.get_docstring(node) or node.name).strip().splitlines()[0]
            todos = sorted({kw.value.value for call in ast.walk(node) if isinstance(call, ast.Call)
                            for kw in call.keywords if kw.arg == "todo" and isinstance(kw.value, ast.Constant)
                            and isinstance(kw.value.value, int)})
            out[node.name] = (doc, todos)
    return out


def stumbles(module: Module) -> list[dict]:
    """The known mistakes: what is wrong, the expectation(s) that catch it, the TODO's hint."""
    from course.grading.hints import read_hints
    from course.grading.mistakes import mistakes

    names = expectations(module)
    try:
        hints = {h.todo: h.title for h in read_hints(module.hints_file)} if module.hints_file.exists() else {}
    except ValueError:
        hints = {}
    out = []
    for mistake in mistakes(module):
        try:
            spec = mistake.spec
        except Exception:  # a mistake being written: the grader proof names it
            continue
        caught = [names.get(t, (t, []))[0] for t in spec.get("caught_by", [])]
        todos = sorted({n for t in spec.get("caught_by", []) for n in names.get(t, ("", []))[1]})
        out.append({"summary": " ".join(str(spec.get("summary", mistake.name)).split()), "caught": caught,
                    "hints": [(n, hints.get(n, "")) for n in todos]})
    return out


def _intro(nb) -> tuple[list[str], list[str]]:
    """The notebook's Questions and Objectives (its first cell)."""
    first = nb.cells[0].source if nb.cells else ""
    blocks = {}
    for name in ("Questions", "Objectives"):
        m = re.search(rf"\*\*{name}\*\*\s*\n((?:\s*- .+\n?)+)", first)
        blocks[name] = [line.strip()[2:].strip() for line in m[1].splitlines() if line.strip()] if m else []
    return blocks["Questions"], blocks["Objectives"]


def sizing() -> dict | None:
    try:
        return json.loads(SIZING.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- measured (from the executed notebooks)


def measure(executed: dict) -> dict:
    """``{"fingerprints": {NN: ...}, "answers": {NN: {question: answer}}, "seconds": {NN: {heading: s}},
    "run": {...}}`` from the executed notebooks (module number -> Executed)."""
    from course.pages.lessons import lesson

    out: dict = {"fingerprints": {}, "answers": {}, "seconds": {}, "run": {}}
    for number, e in sorted(executed.items()):
        if e is None:
            continue
        les = lesson(e.module.notebook, e.nb)
        out["fingerprints"][number] = e.meta.get("fingerprint")
        out["answers"][number] = {c.question: les.answer(c) for c in les.checkpoints}
        out["seconds"][number] = {s.heading: round(s.seconds()) for s in les.sections if s.minutes is not None}
        meta = e.meta
        if not out["run"] or meta.get("executed_at", "") > out["run"].get("date", ""):
            libs = meta.get("libraries", {})
            out["run"] = {"date": meta.get("executed_at", "")[:10], "python": meta.get("python"),
                          "services_required": meta.get("services_required"),
                          **{k: libs.get(k) for k in ("fastapi", "pydantic", "sqlalchemy", "celery")}}
    return out


def compare(recorded: dict, fresh: dict, skipped: dict[str, set[str]] | None = None) -> list[str]:
    """The guide's answers were recorded from the notebooks as they are now (same fingerprints), and
    the checkpoints with an answer are the same. The answers' values are not compared: times and
    races vary from run to run within what each notebook asserts. ``skipped``: per notebook, the
    sections that may have skipped for want of a service (their checkpoints print no answer then)."""
    from course.manifest import find_module
    from course.pages.lessons import lesson

    skipped = skipped or {}
    in_skipped: dict[str, set[str]] = {}
    for number, headings in skipped.items():
        if headings:
            les = lesson(find_module(number, graded=False).notebook)
            in_skipped[number] = {c.question for c in les.checkpoints if c.section.heading in headings}
    problems = []
    for number, fp in sorted(fresh.get("fingerprints", {}).items()):
        old = recorded.get("fingerprints", {}).get(number)
        if old != fp:
            problems.append(f"notebook {number}: the guide's answers were recorded from another version of the "
                            f"notebook ({old} there, {fp} now): run `make pages`")
    for number, answers in sorted(fresh.get("answers", {}).items()):
        old = recorded.get("answers", {}).get(number, {})
        missing = [q for q, a in answers.items() if a is not None and old.get(q) is None
                   and q not in in_skipped.get(number, set())]
        if missing:
            problems.append(f"notebook {number}: checkpoints without a recorded answer: {missing}")
        lost = [q for q, a in answers.items() if a is None and q not in in_skipped.get(number, set())]
        if lost:
            problems.append(f"notebook {number}: these checkpoints printed no `Measured:` line (course.reveal "
                            f"with guess = None): {lost}")
    return problems


# ---------------------------------------------------------------- rendering


def _clock(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _section_plan(section, seconds: float | None) -> str:
    parts = []
    shown = list(dict.fromkeys(section.shown_files()))
    if shown:
        parts.append("walk through " + ", ".join(f"`{Path(f).name}`" for f in shown))
    typed = section.live_code()
    if typed:
        parts.append("type " + ", ".join(f"`{t}`" for t in typed))
    runs = section.run_cells()
    if runs:
        ran = f" ({_seconds(seconds)} of running)" if seconds else ""
        parts.append(f"run {runs} cell{'s' if runs > 1 else ''}{ran}")
    services = section.services()
    if services:
        parts.append("needs " + " and ".join(services))
    return "; ".join(parts) or "read and discuss"


def schedule(module: Module, les, seconds: dict) -> tuple[list[str], int]:
    """The module's schedule as table rows, and its length in minutes (breaks included)."""
    rows = ["| at | part | min | what to do |", "|---|---|---|---|"]
    at, since_break = 0, 0
    timed = [s for s in les.sections if s.minutes is not None]
    checkpoints = {id(c.section): 0 for c in les.checkpoints}
    for c in les.checkpoints:
        checkpoints[id(c.section)] += 1
    for i, s in enumerate(timed):
        plan = _section_plan(s, seconds.get(s.heading))
        n = checkpoints.get(id(s), 0)
        if n:
            plan += f"; {n} checkpoint{'s' if n > 1 else ''}"
        if les.challenge is not None and les.challenge.section is s:
            plan += "; the challenge"
        rows.append(f"| {_clock(at)} | {s.title} | {s.minutes} | {plan} |")
        at += s.minutes
        since_break += s.minutes
        last = i == len(timed) - 1
        if since_break >= BREAK_AFTER and not (last and not module.exercise_minutes):
            rows.append(f"| {_clock(at)} | *break* | {BREAK} | |")
            at += BREAK
            since_break = 0
    if module.exercise_minutes:
        rows.append(f"| {_clock(at)} | exercise | {module.exercise_minutes} | `exercises/{module.name}/` (its "
                    f"README.md is the task); `course check {module.number}`, `course hint {module.number}` |")
        at += module.exercise_minutes
    return rows, at


def _module_section(module: Module, measured: dict) -> tuple[list[str], int]:
    from course.pages.lessons import lesson

    head = f"### {module.number} · {module.title}"
    meta = [f"**{module.lesson_minutes} min lesson" + (f" + {module.exercise_minutes} min exercise**"
                                                        if module.graded else "**")]
    if module.prerequisites:
        meta.append("after " + ", ".join(module.prerequisites))
    meta.append(f"notebook `{module.notebook.relative_to(ROOT).as_posix()}`")
    if module.graded:
        meta.append(f"the learner edits {', '.join(f'`{f}`' for f in module.exercise_files)} in "
                    f"`exercises/{module.name}/`")
    out = [head, "", " · ".join(meta), "", f"The failures the room will see: {module.failure}."]
    if not module.notebook.exists():
        return out + ["", "*The notebook is not written yet: its schedule, checkpoints and services appear here "
                          "once it is (`make pages`).*"], module.lesson_minutes + module.exercise_minutes
    les = lesson(module.notebook)
    questions, objectives = _intro(les.nb)
    if questions:
        out += ["", "**Questions**", *[f"- {q}" for q in questions]]
    if objectives:
        out += ["", "**Objectives**", *[f"- {o}" for o in objectives]]
    rows, total = schedule(module, les, measured.get("seconds", {}).get(module.number, {}))
    out += ["", "#### Schedule", "", *rows]
    answers = measured.get("answers", {}).get(module.number, {})
    if les.checkpoints:
        out += ["", "#### Checkpoints", ""]
        for i, c in enumerate(les.checkpoints, 1):
            answer = answers.get(c.question)
            answer_text = f"measured: {answer}" if answer else "see the executed notebook (not recorded yet)"
            line = f"{i}. *{c.section.title}*: {c.question}"
            if c.guess_hint:
                line += f" (the answer's form: {c.guess_hint})"
            out.append(line)
            out.append(f"   - **Answer** ({answer_text}).")
            if c.discussion:
                out.append(f"   - **Then discuss** (the notebook's next words): {c.discussion}")
    if les.challenge is not None:
        ch = les.challenge
        prompt = " ".join(p.strip() for p in ch.prompt.split("\n") if p.strip())
        out += ["", "#### Challenge", "", f"*{ch.section.title}*: **{ch.title}**. {prompt}"]
        if ch.answer:
            out += ["", "<details><summary>The folded answer</summary>", "", ch.answer, "", "</details>"]
    stumbled = stumbles(module)
    if stumbled:
        out += ["", "#### Where learners stumble", "",
                f"The known mistakes (`checks/{module.name}/mistakes/`): each is a wrong answer learners write, "
                "and the grader proof shows the named expectation failing on it.", "",
                "| the mistake | the expectation that fails | hint |", "|---|---|---|"]
        for s in stumbled:
            hints = "; ".join(f"`course hint {module.number} {n}` ({t})" if t else f"`course hint {module.number} {n}`"
                              for n, t in s["hints"]) or "the expectation's own hint"
            cells = [s["summary"], "; ".join(s["caught"]), hints]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    services = [(s.title, s.services()) for s in les.sections if s.services()]
    if services:
        out += ["", "#### If a service is missing", ""]
        for title, names in services:
            out.append(f"- *{title}* needs {' and '.join(names)}: without it the section prints why and skips; "
                       "show it from the site, and run it where the service runs.")
    return out, total


def _services_list() -> list[str]:
    from course.pages.lessons import SERVICES, lesson

    where: dict[str, list[str]] = {name: [] for name in SERVICES}
    for m in modules():
        if not m.notebook.exists():
            continue
        for s in lesson(m.notebook).sections:
            for name in s.services():
                where[name].append(f"{m.number} *{s.title}*")
    starts = {"PostgreSQL": "127.0.0.1:5432, user `postgres`, trust authentication from 127.0.0.1",
              "Redis": "127.0.0.1:6379", "RabbitMQ": "127.0.0.1:5672, guest/guest"}
    return [f"- **{name}** ({starts[name]}): " + ("; ".join(places) if places else "no section") + "."
            for name, places in where.items()]


def _range(values: list[float], unit: str = "") -> str:
    lo, hi = min(values), max(values)
    return f"{lo:g}{unit}" if lo == hi else f"{lo:g} to {hi:g}{unit}"


def _room() -> list[str]:
    data = sizing()
    if not data:
        return ["*Not measured yet: run `make test-workshop` (it writes `workshop/sizing.json`), then "
                "`make pages`.*"]
    learners = list(data["peak_pss_mib"])
    n = len(learners)
    alone, together = data["alone"], data["together"]
    nb_alone = alone["jobs"]["notebook"]["seconds"]
    ck_alone = alone["jobs"]["check"]["seconds"]
    nb_each = [together[u]["jobs"]["notebook"]["seconds"] for u in learners]
    ck_each = [together[u]["jobs"]["check"]["seconds"] for u in learners]
    pss = list(data["peak_pss_mib"].values())
    pg = list(data["peak_postgres_connections"].values())
    m = data["machine"]
    pg_settings = data.get("postgres") or {}
    reserved = pg_settings.get("superuser_reserved_connections", 3)
    per_learner_pg = 5 * math.ceil((max(pg) + 1) / 5)  # the peak, plus the notebook's admin connection, to 5
    limit_gib = max(1.0, math.ceil(1.5 * max(pss) / 256) / 4)  # 1.5 x the peak, in quarter GiB, at least 1 GiB
    slower = [round(s / nb_alone, 1) for s in nb_each]
    out = [
        f"Measured by `make test-workshop` on {data['date']}: {n} learners at once on a {m['cores']}-core, "
        f"{m['memory_gib']} GiB machine (load average {m['load_before']} before the run), each running "
        f"`{data['notebook']}` and `course check 01 --target solutions` "
        + ("at the same time" if data.get("jobs_at_once") else "one after the other")
        + (", PostgreSQL sections included" if data.get("postgres_sections_ran") else
           ", **without** PostgreSQL (its sections skipped: the connection figures are not measured)")
        + ("." if data.get("passed") else "; **that run failed**: read the figures with care."),
        "",
        f"| | one learner alone | {n} at once (each) |",
        "|---|---|---|",
        f"| {data['notebook']} | {nb_alone:g} s | {_range(nb_each, ' s')} ({_range(slower, 'x')} alone) |",
        f"| `course check 01 --target solutions` | {ck_alone:g} s | {_range(ck_each, ' s')} |",
        f"| memory at the peak (PSS: the learner's server, kernels and all they start) | | {_range(pss, ' MiB')} |",
        f"| PostgreSQL connections at the peak (sampled each second) | | {_range(pg)}; "
        f"{data['postgres_connections_all_learners_peak']} for all {n} at one moment |",
        f"| the hub, the proxy and the culler (PSS) | | {data['hub_pss_mib']} MiB |",
        f"| servers starting | | {n} at once, all ready in {data['servers_ready_seconds']:g} s |",
        "",
        f"For a room of {ROOM} (what follows is worked out from these figures; only module 01 runs on the "
        "measured hub, so run another module's PostgreSQL section as a test learner before relying on it):",
        "",
        f"- **Memory**: a limit of {limit_gib:g} GiB per learner (1.5 times the peak of {max(pss)} MiB, at least "
        f"1 GiB: room for the learner's own experiments), plus 1 GiB for the hub and the system: "
        f"{math.ceil(ROOM * limit_gib + 1)} GiB of RAM for {ROOM} on one machine (TLJH: `tljh-config set "
        f"limits.memory {limit_gib:g}G`).",
        f"- **CPU**: {n} learners on {m['cores']} cores ran the notebook {_range(slower, ' times')} slower than "
        "one alone, which is where time-sensitive expectations start to fail. Plan at least one core per 2 "
        f"learners: {math.ceil(ROOM / 2)} cores for {ROOM}, a per-learner limit of one core.",
        f"- **PostgreSQL connections**: the peak per learner was {max(pg)} (sampled once a second, so a "
        f"shorter burst may be missed); plan {per_learner_pg} per learner (the peak plus one, rounded up to 5), "
        "all at once when the instructor says \"now run the PostgreSQL section\". One shared server needs "
        "`max_connections` of at least "
        f"{per_learner_pg} x N + {reserved} reserved + 10 for yourself: **{per_learner_pg * ROOM + reserved + 10} "
        f"for {ROOM}** (the server measured here had {pg_settings.get('max_connections', '?')}). Each "
        "connection is a server process of a few MB. Zero to JupyterHub with a PostgreSQL per learner needs "
        "only its own 50.",
        "- **Starting**: start every server before the session (the admin page's \"Start All\").",
        "",
        "`workshop/README.md` explains the hub itself (TLJH, Z2JH, authentication, the culler).",
    ]
    return out


def _day_plan(totals: dict[str, int]) -> list[str]:
    rows = ["| | module | lesson + exercise | with breaks | after | needs |", "|---|---|---|---|---|---|"]
    from course.pages.lessons import lesson

    for m in modules():
        needs = []
        if m.notebook.exists():
            for s in lesson(m.notebook).sections:
                needs += [n for n in s.services() if n not in needs]
        minutes = f"{m.lesson_minutes} + {m.exercise_minutes}" if m.graded else f"{m.lesson_minutes}"
        rows.append(f"| {m.number} | {m.title} | {minutes} min | {totals[m.number]} min | "
                    f"{', '.join(m.prerequisites) or '-'} | {', '.join(needs) or '-'} |")
    days, current, used = [], [], 0
    for m in modules():
        t = totals[m.number]
        if current and used + t > DAY:
            days.append((current, used))
            current, used = [], 0
        current.append(m.number)
        used += t + (BREAK if current[:-1] else 0)
    if current:
        days.append((current, used))
    plan = "; ".join(f"day {i}: {', '.join(d)} ({u // 60} h {u % 60:02d})" for i, (d, u) in enumerate(days, 1))
    return ["The whole course, module by module (times from `modules.yml`; \"with breaks\" is the schedule "
            "below):", "", *rows, "",
            f"In days of at most {DAY // 60} h {DAY % 60:02d} of teaching, in order: {plan}. For a shorter "
            "workshop, pick modules and teach what each needs first (the \"after\" column)."]


def _email(totals: dict[str, int]) -> list[str]:
    listed = "\n".join(f"   - {m.number} {m.title} ({m.lesson_minutes + m.exercise_minutes} min)" for m in modules())
    return [
        "```text",
        "Subject: FastAPI in Production, [date]: what to bring and what to do before",
        "",
        "Hello,",
        "",
        "You are registered for FastAPI in Production on [date], [time], at [place / link].",
        "The course is for developers who already write FastAPI endpoints: every failure it teaches",
        "(pool exhaustion, a blocked event loop, a PATCH that erases data, a lost background task) happens",
        "for real on your screen, then is fixed and measured.",
        "",
        "We will cover:",
        listed,
        "",
        "[If you use the workshop's JupyterHub:] nothing to install. Open [hub URL] and log in with",
        "[GitHub / the name and password you will choose]. Please log in once before the day, open",
        "notebooks/00_start_here.ipynb and run it: it tells you whether everything is in place.",
        "",
        "[If you use your own laptop:] please install it before the day (about 2 minutes):",
        "  1. Python 3.11, 3.12 or 3.13, git and make (on Windows: WSL).",
        "  2. git clone [repository URL] && cd fastapi-in-production",
        "  3. make lab            (creates the environment once, then opens JupyterLab)",
        "  4. in a terminal in that folder: .venv/bin/course doctor",
        "     Every line should say OK. A NOTE about PostgreSQL, Redis or RabbitMQ is fine: the sections",
        "     that need them will be shown on the screen. Please send me the last line it prints.",
        "  5. run notebooks/00_start_here.ipynb top to bottom (Run > Run All Cells).",
        "",
        "If anything fails, reply with what `course doctor` printed and we will fix it before the day.",
        "",
        "[Your name]",
        "```",
    ]


def render(measured: dict) -> str:
    run = measured.get("run") or {}
    if run:
        note = (f"Generated by `make pages` from `modules.yml`, the notebooks, the known mistakes, the hints, "
                f"`workshop/sizing.json` and the notebooks as `make test` ran them on {run.get('date')} (Python "
                f"{run.get('python')}, FastAPI {run.get('fastapi')}, Pydantic {run.get('pydantic')}, SQLAlchemy "
                f"{run.get('sqlalchemy')}, Celery {run.get('celery')}); the prose is "
                "`course/pages/instructors.md`. Edit those, not this file: a test keeps it equal to them.")
    else:
        note = "Generated by `make pages`; no executed notebooks were available, so no measured answers."
    sections, totals = [], {}
    for m in modules():
        lines, total = _module_section(m, measured)
        totals[m.number] = total
        sections += lines + [""]
    parts = {
        "generated_note": note,
        "services": "\n".join(_services_list()),
        "room": "\n".join(_room()),
        "day_plan": "\n".join(_day_plan(totals)),
        "modules": "\n".join(sections).rstrip(),
        "email": "\n".join(_email(totals)),
    }
    text = TEMPLATE.read_text()
    for key, value in parts.items():
        text = text.replace("{{" + key + "}}", value)
    missing = re.findall(r"\{\{(\w+)\}\}", text)
    assert not missing, f"course/pages/instructors.md names parts nobody makes: {missing}"
    return embed(text, measured)
