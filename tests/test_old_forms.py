"""OLD_FORMS.md is true: every old form is run against the pinned versions and does what the page says.

Each probe (course/oldforms/forms/<key>.py, dashes as underscores) runs in a subprocess of this
interpreter and prints one JSON line; the test checks it against `expect` in the form's .yml. The
probes of the selected tests start together, two at a time, when the first of them needs its
result, so the file takes about half the sum.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from course import oldforms
from course.oldforms import FORMS, OldForm, is_shell

ROOT = Path(__file__).resolve().parents[1]
BY_KEY = {form.key: form for form in FORMS}


@pytest.fixture(scope="module")
def probe_results(request: pytest.FixtureRequest, record_time):
    """Start the probes of every selected test_probe item at once; {key: Future}.

    Under pytest-xdist a worker does not know which items it will get: each test then runs its own
    probe (the workers already run in parallel)."""
    if hasattr(request.config, "workerinput"):
        yield {}
        return
    keys = [item.callspec.params["key"] for item in request.session.items
            if item.module is request.module and item.originalname == "test_probe"]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # the 2 cores CI has
        futures: dict[str, Future] = {key: pool.submit(oldforms.run_probe, BY_KEY[key]) for key in keys}
        yield futures
    record_time(f"old forms: {len(keys)} probes", time.perf_counter() - started)


def test_keys_are_unique() -> None:
    keys = [form.key for form in FORMS]
    assert len(keys) == len(set(keys)), f"duplicate keys: {sorted(k for k in keys if keys.count(k) > 1)}"


@pytest.mark.parametrize("key", list(BY_KEY))
def test_probe(key: str, probe_results: dict[str, Future]) -> None:
    form = BY_KEY[key]
    future = probe_results.get(key)
    outcome = future.result() if future is not None else oldforms.run_probe(form)
    problems = oldforms.check(form.expect, outcome)
    assert not problems, (
        f"{key}: the old form no longer behaves as OLD_FORMS.md says.\n  " + "\n  ".join(problems)
        + f"\nSee what it does now: python -m course.oldforms --check {key}; fix {form.probe.with_suffix('.yml')} "
        f"(what_happens, expect) or its probe {form.probe.name}, then: {oldforms.REGENERATE}")


@pytest.mark.parametrize("key", list(BY_KEY))
def test_cited_source_lines(key: str) -> None:
    problems = oldforms.source_problems(BY_KEY[key])
    assert not problems, f"{key}: a cited library line moved or changed:\n  " + "\n  ".join(problems)


def _compiles(code: str) -> None:
    """Snippets are fragments (top-level await, yield, return): compile them as a function body."""
    ast.parse("async def _snippet():\n" + textwrap.indent(code, "    ") + "\n")


@pytest.mark.parametrize("key", list(BY_KEY))
def test_snippets_are_python(key: str) -> None:
    form: OldForm = BY_KEY[key]
    for label, code in (("old", form.old), ("today", form.today)):
        if is_shell(code):
            continue
        try:
            _compiles(code)
        except SyntaxError as exc:
            pytest.fail(f"{key}: the {label} snippet is not valid Python: {exc}")


def test_entries_are_complete() -> None:
    for form in FORMS:
        empty = [name for name in ("title", "today_title", "seen_in", "old", "today", "what_happens", "where")
                 if not getattr(form, name).strip()]
        assert not empty, f"{form.key}: empty {empty}"
        assert form.expect, f"{form.key}: expect asserts nothing"


def test_every_form_file_is_on_the_page() -> None:
    """order.txt lists every form once, and each listed form has its .yml and its probe."""
    listed = [key.replace("-", "_") for key in oldforms.keys()]
    on_disk = {path.stem for path in oldforms.FORMS_DIR.iterdir() if path.suffix in (".yml", ".py")}
    assert len(listed) == len(set(listed)), "order.txt lists a form twice"
    assert on_disk == set(listed), (f"files of no form in order.txt: {sorted(on_disk - set(listed))}; "
                                    f"forms in order.txt without files: {sorted(set(listed) - on_disk)}")
    missing = [f"{stem}{suffix}" for stem in listed for suffix in (".yml", ".py")
               if not (oldforms.FORMS_DIR / f"{stem}{suffix}").exists()]
    assert not missing, f"missing in {oldforms.FORMS_DIR}: {missing}"


def _kit_names() -> set[str]:
    tree = ast.parse((oldforms.HERE / "probekit.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("key", list(BY_KEY))
def test_probe_is_a_script(key: str) -> None:
    """A probe imports only what probekit defines, emits its outcome, and runs pytest only through
    probekit.run_pytest (course.pytest_runner), never a subprocess of its own."""
    tree = ast.parse(BY_KEY[key].probe.read_text(), str(BY_KEY[key].probe))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "probekit"
                for alias in node.names}
    assert "emit" in imported, f"{key}: the probe never imports emit, so it prints no outcome"
    assert imported <= _kit_names(), f"{key}: probekit has no {sorted(imported - _kit_names())}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("run", "Popen"):
            words = {arg.value for arg in ast.walk(node) if isinstance(arg, ast.Constant)}
            assert "pytest" not in words, f"{key}, line {node.lineno}: start pytest with probekit.run_pytest"


def test_load_reads_and_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A form's .yml: a newer Python's override applies, an unknown field is an error that names it."""
    fields = "".join(f"{name}: x\n" for name in ("title", "today_title", "seen_in", "old", "today", "what_happens", "where"))
    (tmp_path / "some_form.yml").write_text(fields + "expect: {a: 1, b: 1}\n"
                                             "expect_from_python: {'3.0': {a: 2}, '99.0': {b: 3}}\n")
    (tmp_path / "typo_form.yml").write_text(fields + "expect: {a: 1}\nexpected: {a: 2}\n")
    monkeypatch.setattr(oldforms, "FORMS_DIR", tmp_path)
    form = oldforms.load("some-form")
    assert form.expect == {"a": 2, "b": 1} and form.probe == tmp_path / "some_form.py"
    with pytest.raises(ValueError, match=r"typo_form.yml: .*unknown fields \['expected'\]"):
        oldforms.load("typo-form")


@functools.lru_cache(maxsize=None)
def _headings(notebook: Path) -> list[str]:
    cells = nbformat.read(notebook, as_version=4).cells
    return [line.lstrip("#").strip() for cell in cells if cell.cell_type == "markdown"
            for line in cell.source.splitlines() if line.startswith("#")]


@pytest.mark.parametrize("key", list(BY_KEY))
def test_where_points_at_what_exists(key: str) -> None:
    """`where` names a notebook and its section titles as they are, or a module still to come."""
    where = BY_KEY[key].where
    notebook = re.match(r"(notebooks/\S+?\.ipynb)", where)
    if notebook:
        path = ROOT / notebook.group(1)
        assert path.exists(), f"{key}: {notebook.group(1)} does not exist"
        headings = _headings(path)
        for title in re.findall(r'"([^"]+)"', where):
            assert any(title in heading for heading in headings), (
                f"{key}: {notebook.group(1)} has no section {title!r}; its sections: {headings}")
    coming = re.match(r"module (\d\d) \(.*; coming\)", where)
    if coming:
        built = sorted(ROOT.glob(f"notebooks/{coming.group(1)}_*.ipynb"))
        assert not built, f"{key}: module {coming.group(1)} exists now ({built[0].name}): point `where` at it"
    assert notebook or coming or where.startswith("requirements.txt"), f"{key}: where={where!r}"


def test_the_page_is_generated_from_the_data() -> None:
    page = oldforms.PAGE
    assert page.exists(), f"OLD_FORMS.md is missing; create it with: {oldforms.REGENERATE}"
    assert page.read_text() == oldforms.render(), (
        "OLD_FORMS.md differs from course/oldforms/forms (data or pinned versions changed). "
        f"Regenerate it: {oldforms.REGENERATE}")


def test_main_prints_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert oldforms.main([]) == 0
    assert capsys.readouterr().out == oldforms.render()
    assert oldforms.main() == 0  # as `course old-forms` calls it: pytest's own argv is not read
    assert capsys.readouterr().out == oldforms.render()


def test_module_prints_the_page() -> None:
    """`python -m course.oldforms > OLD_FORMS.md` (the regeneration command) prints the same page."""
    done = subprocess.run([sys.executable, "-m", "course.oldforms"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == oldforms.render()


def test_check_reports_disagreement() -> None:
    """The comparison the probes rely on can fail: a wrong type, a missing key, a message not contained."""
    outcome = {"raised": "ImportError", "message": "cannot import name 'Optional' from 'pydantic'"}
    assert oldforms.check({"raised": "ImportError", "message": "cannot import name 'Optional'"}, outcome) == []
    assert oldforms.check({"raised": "TypeError"}, outcome)
    assert oldforms.check({"message": "no such text"}, outcome)
    assert oldforms.check({"today": 200}, outcome)
    assert oldforms.check({"raised": "ImportError"}, {"probe_failed": "exit code 1"})
