"""The radio charts' time axis reads as a clock (local time), at every zoom."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from ui.workspace.charts import ClockAxis, RadioCharts


def _labels(axis: ClockAxis, lo: float, hi: float, pixels: int = 800) -> list[str]:
    from PySide6.QtGui import QFont, QFontMetrics

    axis.fontMetrics = QFontMetrics(QFont())  # what painting sets (generateDrawSpecs)
    out = []
    for spacing, values in axis.tickValues(lo, hi, pixels):
        out += axis.tickStrings(values, 1.0, spacing)
    return [label for label in out if label]


@pytest.mark.parametrize(
    ("span_s", "pattern"),
    [
        (2.0, r"^\d\d:\d\d:\d\d(\.\d{3})?$"),  # below seconds: clock time with milliseconds
        (60.0, r"^\d\d:\d\d:\d\d$"),
        (3600.0, r"^(\d\d:\d\d|\w{3} \d\d)$"),
    ],
)
def test_every_zoom_shows_clock_time(qapp, span_s, pattern):
    axis = ClockAxis()
    start = dt.datetime(2026, 12, 1, 12, 3, 15, tzinfo=dt.UTC).timestamp()
    labels = _labels(axis, start, start + span_s)
    assert labels and all(re.match(pattern, label) for label in labels), labels


def test_subsecond_ticks_name_the_hour_minute_and_second_in_local_time(qapp):
    axis = ClockAxis()
    start = dt.datetime(2026, 12, 1, 12, 3, 16, tzinfo=dt.UTC).timestamp()
    labels = _labels(axis, start, start + 1.0)
    local = dt.datetime.fromtimestamp(start).strftime("%H:%M:%S")
    assert any(label.startswith(local) for label in labels), (local, labels)
    assert not any(re.match(r"^\d\d\.\d{3}$", label) for label in labels)  # never seconds alone
    millis = [int(label[-3:]) for label in labels if "." in label]
    assert millis and all(ms % 50 == 0 for ms in millis), labels  # 16.600, never 16.599


def test_the_charts_use_the_clock_axis(qapp):
    charts = RadioCharts()
    assert all(isinstance(plot.getAxis("bottom"), ClockAxis) for plot in charts.plots.values())
