"""Live radio charts: RSSI, SNR and spreading factor over time for the selected devices.

Three stacked pyqtgraph plots share one time axis. Each device keeps numpy buffers that grow
geometrically, `append` only writes into them, and a timer pushes the new data to the curves
at most 10 times a second. Curves clip to the view and downsample, so 100k+ points a device
stay interactive; NaN (missing) values are left out of each plot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.store import NONE_INT

PLACEHOLDER_TEXT = "Select one or more devices to chart RSSI, SNR and spreading factor."
FLUSH_INTERVAL_MS = 100  # at most 10 redraws a second
SYMBOL_LIMIT = 2000  # a device with more points is drawn as a line only
# Tableau 10: distinct on light and dark backgrounds.
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
WINDOWS = (
    ("All data", None),
    ("Last 5 minutes", 5 * 60),
    ("Last 15 minutes", 15 * 60),
    ("Last hour", 3600),
    ("Last 6 hours", 6 * 3600),
    ("Last 24 hours", 24 * 3600),
    ("Last 7 days", 7 * 86400),
)
METRICS = ("rssi", "snr", "sf")
_TITLES = {"rssi": "RSSI (dBm)", "snr": "SNR (dB)", "sf": "SF"}
LEGEND_COLUMNS = 4
AXIS_WIDTH = 64  # left axes of equal width, so the three plots line up


class ClockAxis(pg.DateAxisItem):
    """The time axis as users read a clock, in this computer's time zone: hours, minutes and
    seconds at every zoom where seconds matter, with milliseconds below a second
    ("12:03:16.250" where pyqtgraph's own axis shows "16.250"), days and hours when zoomed out."""

    def __init__(self, **kwargs) -> None:
        from pyqtgraph.graphicsItems import DateAxisItem as dates

        super().__init__(orientation="bottom", **kwargs)
        milliseconds = dates.ZoomLevel(
            [
                dates.TickSpec(dates.MINUTE_SPACING, dates.makeSStepper(dates.MINUTE_SPACING), "%H:%M:%S"),
                dates.TickSpec(
                    dates.MS_SPACING, dates.makeMSStepper(dates.MS_SPACING), "%H:%M:%S.%f", autoSkip=[1, 5, 10, 25]
                ),
            ],
            "99:99:99.999",
        )
        self.zoomLevels = type(self.zoomLevels)(
            (spacing, milliseconds if level is dates.MS_ZOOM_LEVEL else level)
            for spacing, level in self.zoomLevels.items()
        )

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        # Milliseconds are cut, not rounded, from the float time: 16.6 s is 16.5999… and would
        # read "16.599" without the half millisecond added first.
        if spacing < 1:
            values = [v + 0.0005 for v in values]
        return super().tickStrings(values, scale, spacing)


# ----- data from the event store --------------------------------------------------------------


def _take(column, dtype, idx: np.ndarray) -> np.ndarray:
    """column[idx] as a new array; the temporary view on the array.array is released at once
    (an array.array that exports its buffer cannot grow or be trimmed)."""
    if len(idx) == 0 or len(column) == 0:
        return np.empty(0, dtype=dtype)
    view = np.frombuffer(column, dtype=dtype)
    try:
        return view.take(idx)
    finally:
        del view


def series_from_store(store, positions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ts, rssi, snr, sf) float64 arrays for absolute positions of an EventStore (trimmed
    positions are skipped); missing values are NaN, also the spreading factor's NONE_INT."""
    if isinstance(positions, np.ndarray):
        pos = positions.astype(np.int64, copy=True)
    elif isinstance(positions, range):
        pos = np.arange(positions.start, positions.stop, positions.step, dtype=np.int64)
    else:
        pos = np.array(positions, dtype=np.int64)  # copies: no buffer export is left behind
    idx = pos - store.zero
    lo, hi = store.room, store.room + len(store)  # the column indexes that hold rows
    if len(idx) and (idx[0] < lo or idx[-1] >= hi or idx.min() < lo or idx.max() >= hi):
        idx = idx[(idx >= lo) & (idx < hi)]
    cols = store.cols
    ts = _take(cols["ts"], np.float64, idx)
    rssi = _take(cols["rssi"], np.float64, idx)
    snr = _take(cols["snr"], np.float64, idx)
    sf_raw = _take(cols["spreading_factor"], np.int64, idx)
    sf = sf_raw.astype(np.float64)
    sf[sf_raw == NONE_INT] = np.nan
    return ts, rssi, snr, sf


def device_series(store, keys: Iterable[str]) -> dict[str, tuple]:
    """{device key: series_from_store(...)} for the devices of an EventStore (unknown keys left out)."""
    out = {}
    for key in keys:
        positions = store.device_index.get(key)
        if positions is not None:
            out[key] = series_from_store(store, positions)
    return out


# ----- one device's buffers -------------------------------------------------------------------


def _as_float_array(values) -> np.ndarray:
    """Lists with None, arrays, scalars -> a 1-d float64 array (None -> NaN)."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False).ravel()
    if values is None:
        return np.empty(0)
    if not isinstance(values, (list, tuple)):
        values = [values]
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


class _Series:
    """ts/rssi/snr/sf of one device in buffers that double when full."""

    __slots__ = ("key", "label", "color", "n", "buf", "unsorted", "dirty", "curves", "symbols")

    def __init__(self, key: str, label: str, color: str, ts, rssi, snr, sf) -> None:
        self.key, self.label, self.color = key, label, color
        self.n = 0
        self.buf = np.full((4, 0), np.nan)
        self.unsorted = False
        self.dirty = True
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.symbols: bool | None = None  # how the curves are drawn now: dots and thicker lines or not
        self.extend(ts, rssi, snr, sf)

    def extend(self, ts, rssi, snr, sf) -> int:
        cols = [_as_float_array(v) for v in (ts, rssi, snr, sf)]
        m = len(cols[0])
        if m == 0:
            return 0
        for i in range(1, 4):  # missing or short columns are NaN
            if len(cols[i]) != m:
                col = np.full(m, np.nan)
                k = min(m, len(cols[i]))
                col[:k] = cols[i][:k]
                cols[i] = col
        need = self.n + m
        if need > self.buf.shape[1]:
            capacity = max(need, 2 * self.buf.shape[1], 1024)
            grown = np.full((4, capacity), np.nan)
            grown[:, : self.n] = self.buf[:, : self.n]
            self.buf = grown
        new = self.buf[:, self.n : need]
        for i in range(4):
            new[i] = cols[i]
        if (self.n and cols[0][0] < self.buf[0, self.n - 1]) or (m > 1 and np.any(np.diff(cols[0]) < 0)):
            self.unsorted = True
        self.n = need
        self.dirty = True
        return m

    def sort(self) -> None:
        """Curves clip to the view by bisecting x: keep time ascending."""
        if self.unsorted:
            ts = self.buf[0, : self.n]
            order = np.argsort(np.where(np.isnan(ts), np.inf, ts), kind="stable")
            self.buf[:, : self.n] = self.buf[:, order]
            self.unsorted = False

    def data(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one metric with the NaN points left out."""
        x = self.buf[0, : self.n]
        y = self.buf[1 + METRICS.index(metric), : self.n]
        ok = np.isfinite(y) & np.isfinite(x)
        if ok.all():
            return x, y
        return x[ok], y[ok]

    def time_bounds(self) -> tuple[float, float] | None:
        x = self.buf[0, : self.n]
        x = x[np.isfinite(x)]
        return (float(x[0]), float(x[-1])) if len(x) else None


# ----- the widget -----------------------------------------------------------------------------


class RadioCharts(QWidget):
    """set_devices(series) replaces what is charted; append(key, ts, rssi, snr, sf) adds live points."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._series: dict[str, _Series] = {}
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_INTERVAL_MS)
        self._flush_timer.timeout.connect(self.flush)
        self._setting_range = False
        self._flush_when_shown = False

        self.placeholder = QLabel(PLACEHOLDER_TEXT)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)

        self.follow = QCheckBox("Follow live")
        self.follow.setChecked(True)
        self.follow.setToolTip("Keep the newest points in view; zooming or panning with the mouse turns this off")
        self.window_box = QComboBox()
        for label, seconds in WINDOWS:
            self.window_box.addItem(label, seconds)
        self.window_box.setToolTip("How much time the charts show while following live data")
        self.reset_button = QPushButton("Show all")
        self.reset_button.setToolTip("Zoom out to all the data (double-click a chart does the same)")
        self.summary = QLabel()
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 0, 4, 0)
        bar.addWidget(self.follow)
        bar.addWidget(self.window_box)
        bar.addWidget(self.reset_button)
        bar.addStretch(1)
        bar.addWidget(self.summary)

        self.graphics = pg.GraphicsLayoutWidget()
        self.plots: dict[str, pg.PlotItem] = {}
        for row, metric in enumerate(METRICS):
            plot = self.graphics.addPlot(row=row, col=0, axisItems={"bottom": ClockAxis()})
            plot.setLabel("left", _TITLES[metric])
            plot.getAxis("left").setWidth(AXIS_WIDTH)
            plot.showGrid(x=True, y=True, alpha=0.18)
            plot.setMouseEnabled(x=True, y=False)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setClipToView(True)
            plot.setDownsampling(auto=True, mode="peak")
            plot.enableAutoRange(y=True)
            plot.setAutoVisible(y=True)
            if row:
                plot.setXLink(self.plots[METRICS[0]])
            if row < len(METRICS) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
            plot.vb.sigRangeChangedManually.connect(self._user_moved_view)
            self.plots[metric] = plot
        self.plots["sf"].getAxis("left").setTicks([[(v, f"SF{v}") for v in range(5, 13)]])
        self.plots["sf"].enableAutoRange(y=False)
        for row, stretch in enumerate((4, 4, 3)):
            self.graphics.ci.layout.setRowStretchFactor(row, stretch)
        self.graphics.ci.setSpacing(2)
        self.graphics.scene().sigMouseClicked.connect(self._scene_clicked)
        # The legend in a row of its own under the plots, so it never hides data.
        self.legend = pg.LegendItem(labelTextSize="9pt", colCount=LEGEND_COLUMNS, frame=False)
        self.graphics.addItem(self.legend, row=len(METRICS), col=0)
        self.graphics.ci.layout.setRowStretchFactor(len(METRICS), 0)
        self._apply_theme()

        content = QWidget()
        lay = QVBoxLayout(content)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addLayout(bar)
        lay.addWidget(self.graphics, 1)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)

        self.follow.toggled.connect(self._follow_changed)
        self.window_box.currentIndexChanged.connect(self._window_changed)
        self.reset_button.clicked.connect(self.show_all)

    # ----- look

    def _apply_theme(self) -> None:
        pal = self.palette()
        background = pal.color(QPalette.ColorRole.Base)
        text = pal.color(QPalette.ColorRole.Text)
        grid = QColor(text)
        self.graphics.setBackground(background)
        for plot in self.plots.values():
            for name in ("left", "bottom"):
                axis = plot.getAxis(name)
                axis.setPen(pg.mkPen(grid))
                axis.setTextPen(pg.mkPen(text))
        self.legend.setLabelTextColor(text)
        self.summary.setStyleSheet(f"QLabel {{ color: rgba({text.red()}, {text.green()}, {text.blue()}, 170); }}")
        self.placeholder.setStyleSheet(self.summary.styleSheet())

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self._flush_when_shown:
            self.flush()

    def changeEvent(self, event) -> None:  # noqa: N802
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange:
            self._apply_theme()

    # ----- data

    def set_devices(self, series: Mapping[str, tuple], labels: Mapping[str, str] | None = None) -> None:
        """Replaces the charted devices: {key: (ts, rssi, snr, sf)} (arrays or lists, NaN/None for
        missing); labels: legend text per key (default: the key). An empty mapping shows the hint."""
        self._flush_timer.stop()
        for s in self._series.values():
            for metric, curve in s.curves.items():
                self.plots[metric].removeItem(curve)
        self.legend.clear()
        self._series = {}
        for i, (key, data) in enumerate(series.items()):
            ts, rssi, snr, sf = (tuple(data) + (None, None, None, None))[:4]
            label = (labels or {}).get(key) or str(key)
            s = _Series(key, label, COLORS[i % len(COLORS)], ts, rssi, snr, sf)
            self._add_curves(s)
            self.legend.addItem(s.curves["rssi"], s.label)
            self._series[key] = s
        self.stack.setCurrentIndex(1 if self._series else 0)
        self.flush()
        if self._series and not self.follow.isChecked():
            self.show_all(keep_follow=True)

    def clear(self) -> None:
        self.set_devices({})

    def devices(self) -> list[str]:
        return list(self._series)

    def point_count(self, key: str) -> int:
        s = self._series.get(key)
        return 0 if s is None else s.n

    def append(self, key: str, ts, rssi, snr, sf) -> bool:
        """Adds points to a charted device (lists, arrays or single values; None/NaN missing).
        The curves catch up within FLUSH_INTERVAL_MS. False if the device is not charted."""
        s = self._series.get(key)
        if s is None:
            return False
        if s.extend(ts, rssi, snr, sf) and not self._flush_timer.isActive():
            self._flush_timer.start()
        return True

    def curve(self, key: str, metric: str) -> pg.PlotDataItem | None:
        """The curve of one device in one plot ('rssi', 'snr' or 'sf'), for tests and tooltips."""
        s = self._series.get(key)
        return None if s is None else s.curves.get(metric)

    def _add_curves(self, s: _Series) -> None:
        for metric in METRICS:
            color = QColor(s.color)
            if metric == "sf":  # step lines of several devices overlap: lighter lines, solid dots
                color.setAlpha(150)
            curve = pg.PlotDataItem(
                pen=pg.mkPen(color, width=1),
                clipToView=True,
                autoDownsample=True,
                downsampleMethod="peak",
                skipFiniteCheck=True,
                stepMode="left" if metric == "sf" else None,
            )
            self.plots[metric].addItem(curve)
            s.curves[metric] = curve

    def flush(self) -> None:
        """Pushes buffered points to the curves now (the timer does this after append). While the
        widget is hidden (another tab in front) the points wait in the buffers until it is shown."""
        self._flush_timer.stop()
        if not self.isVisible():
            self._flush_when_shown = True
            return
        self._flush_when_shown = False
        total = 0
        sf_lo, sf_hi = math.inf, -math.inf
        count = len(self._series)
        # SF steps of several devices share a few values: draw them a little apart (below 0.25 SF).
        sf_step = min(0.1, 0.45 / max(1, count - 1)) if count > 1 else 0.0
        for i, s in enumerate(self._series.values()):
            total += s.n
            if not s.dirty:
                sf = s.buf[3, : s.n]
                if len(sf) and np.isfinite(sf).any():
                    sf_lo, sf_hi = min(sf_lo, np.nanmin(sf)), max(sf_hi, np.nanmax(sf))
                continue
            s.sort()
            symbols = s.n <= SYMBOL_LIMIT
            for metric, curve in s.curves.items():
                x, y = s.data(metric)
                if metric == "sf" and len(y):
                    sf_lo, sf_hi = min(sf_lo, float(y.min())), max(sf_hi, float(y.max()))
                    if sf_step:
                        y = y + (i - (count - 1) / 2) * sf_step
                if symbols != s.symbols:
                    # Qt strokes lines wider than 1 px ~30x slower: thin lines once points are many.
                    color = curve.opts["pen"].color()
                    curve.setPen(pg.mkPen(color, width=1.5 if symbols else 1))
                    if symbols:
                        curve.setSymbol("o")
                        curve.setSymbolSize(5)
                        curve.setSymbolPen(None)
                        curve.setSymbolBrush(s.color)
                    else:
                        curve.setSymbol(None)
                curve.setData(x, y)
            s.symbols = symbols
            s.dirty = False
        if sf_lo <= sf_hi:
            self.plots["sf"].setYRange(sf_lo - 0.6, sf_hi + 0.6, padding=0)
        else:
            self.plots["sf"].setYRange(6.4, 12.6, padding=0)
        n = len(self._series)
        self.summary.setText(
            f"{n} device{'s' if n != 1 else ''}, {total:,} point{'s' if total != 1 else ''}" if n else ""
        )
        if self.follow.isChecked():
            self._follow_range()

    # ----- view range

    def _data_bounds(self) -> tuple[float, float] | None:
        bounds = [b for s in self._series.values() if (b := s.time_bounds()) is not None]
        if not bounds:
            return None
        return min(b[0] for b in bounds), max(b[1] for b in bounds)

    def window_seconds(self) -> float | None:
        return self.window_box.currentData()

    def _set_x_range(self, lo: float, hi: float, padding: float = 0.02) -> None:
        if hi - lo < 1:  # one point, or all at one time: a minute around it
            lo, hi = lo - 30, hi + 30
        self._setting_range = True
        try:
            self.plots["rssi"].setXRange(lo, hi, padding=padding)
        finally:
            self._setting_range = False

    def _follow_range(self) -> None:
        bounds = self._data_bounds()
        if bounds is None:
            return
        window = self.window_seconds()
        if window is None:
            self._set_x_range(*bounds)
        else:
            last = bounds[1]
            self._set_x_range(last - window, last + window * 0.02, padding=0)

    def show_all(self, checked: bool = False, keep_follow: bool = False) -> None:
        """Zooms out to all the data (and stops following when a time window was being followed)."""
        bounds = self._data_bounds()
        if bounds is not None:
            self._set_x_range(*bounds)
        if not keep_follow and self.window_seconds() is not None:
            self.follow.setChecked(False)

    def _follow_changed(self, on: bool) -> None:
        if on:
            self._follow_range()

    def _window_changed(self, _index: int) -> None:
        """Choosing a time window means following the newest data with it."""
        if self.follow.isChecked():
            self._follow_range()
        else:
            self.follow.setChecked(True)

    def _user_moved_view(self, *_args) -> None:
        if not self._setting_range and self.follow.isChecked():
            self.follow.setChecked(False)

    def _scene_clicked(self, event) -> None:
        if event.double():
            self.show_all()
