"""Each figure helper in course/plots.py draws on small data (Agg backend, no display), and tells
its series apart without colour: hatching, markers, line styles or words."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from course import plots  # noqa: E402
from course.plots import BAD, GOOD, NEUTRAL, TRAP  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _draw(fig) -> None:
    fig.canvas.draw()  # lays out every text: a bad argument fails here, not only when shown


def test_compare_bars_hatches_and_labels() -> None:
    ax = plots.compare_bars({"a": 3, "b": 1}, title="t", ylabel="y", colors=[BAD, GOOD], fmt="{:.0f}")
    _draw(ax.figure)
    assert [p.get_hatch() or "" for p in ax.patches] == ["xxx", ""]
    assert [t.get_text() for t in ax.texts] == ["3\nproblem", "1\nfix"]


def test_bar_panels_one_panel_each() -> None:
    fig = plots.bar_panels({"first": {"a": 1, "b": 2}, "second": {"a": 3, "b": 4}},
                           ylabel=["y1", "y2"], colors=[BAD, GOOD], fmt="{:.0f}", title="both", sharey=True)
    _draw(fig)
    assert [ax.get_title() for ax in fig.axes] == ["first", "second"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["y1", "y2"]
    assert all([p.get_hatch() or "" for p in ax.patches] == ["xxx", ""] for ax in fig.axes)
    fig = plots.bar_panels({"only": {"a": 1.5}}, ylabel="y")
    _draw(fig)
    assert len(fig.axes) == 1


def test_errors_and_latency() -> None:
    result = SimpleNamespace(failed=2, n=10, p50=0.1, p95=0.3)
    fig = plots.errors_and_latency({"held": result, "short": result}, title="t", colors=[BAD, GOOD])
    _draw(fig)
    assert len(fig.axes) == 2


def test_answers_by_status_writes_the_counts_out() -> None:
    counts = {"naive": {422: 20, 500: 5, 200: 5}, "fixed": {422: 28, 404: 2}}
    groups = {"422": ((422,), GOOD, ""), "404/409": ((404, 409), "#2980b9", ".."),
              "500": ((500,), BAD, "xxx"), "200": ((200,), TRAP, "///")}
    ax = plots.answers_by_status(counts, groups, total=30, title="t", xlabel="answers",
                                 spell_out=(500, 200), min_label=3)
    _draw(ax.figure)
    texts = [t.get_text() for t in ax.texts]
    assert "5 x 500\n5 x 200" in texts and "0 x 500\n0 x 200" in texts  # beside each bar
    assert "20" in texts and "2" not in texts  # on a segment only when it is wide enough
    assert {p.get_hatch() or "" for p in ax.patches if p.get_width()} == {"", "..", "xxx", "///"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(groups)


def test_loop_lag_marks_the_wakeups_and_the_worst_stall() -> None:
    ax = plots.loop_lag({"blocking": [(0.1, 0.1), (0.3, 0.2)], "awaiting": [(0.1, 0.001)]},
                        title="t", colors=[BAD, GOOD])
    _draw(ax.figure)
    lines = ax.get_lines()
    assert [line.get_linestyle() for line in lines[::2]] == ["-", "--"]  # the curves
    assert [line.get_marker() for line in lines[1::2]] == ["x", "o"]  # the wake-ups
    assert any("0.20 s late" in t.get_text() for t in ax.texts)
    plots.loop_lag({"nothing": []}, title="empty")  # no samples: no annotation, no error


def test_answer_staircase_one_line_per_label() -> None:
    ax = plots.answer_staircase({"a": [0.3, 0.1, 0.2], "b": [0.1] * 12, "c": [1.0]},
                                title="t", colors=[GOOD, BAD, "#123456"])
    _draw(ax.figure)
    lines = ax.get_lines()
    assert [list(line.get_ydata()) for line in lines][0] == [0.1, 0.2, 0.3]  # sorted
    assert len({(line.get_marker(), line.get_linestyle()) for line in lines}) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]


def test_memory_over_time_labels_each_peak() -> None:
    sample = SimpleNamespace
    ax = plots.memory_over_time(
        {"read_all": [sample(t=0.0, rss_mib=50), sample(t=0.1, rss_mib=400), sample(t=0.2, rss_mib=60)],
         "streaming": [sample(t=0.0, rss_mib=50), sample(t=0.1, rss_mib=52)]},
        peaks={"read_all": 410, "streaming": 53}, title="t", colors=[BAD, GOOD, NEUTRAL],
        xlabel="seconds since the upload started")
    _draw(ax.figure)
    assert [t.get_text() for t in ax.texts] == ["read_all: VmHWM 410 MiB", "streaming: VmHWM 53 MiB"]
    assert [line.get_marker() for line in ax.get_lines()] == ["x", "o"]
    assert ax.get_xlabel() == "seconds since the upload started"


def test_compare_bars_on_a_figure_of_its_own_size() -> None:
    ax = plots.compare_bars({"a\nlong label": 1.0, "b": 2.0}, title="t", ylabel="s", fmt="{:.1f} s",
                            figsize=(9, 3.4))
    _draw(ax.figure)
    assert tuple(ax.figure.get_size_inches()) == (9, 3.4)
