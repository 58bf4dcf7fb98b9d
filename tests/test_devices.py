"""Per-device statistics: the fCnt rules case by case, radio stats, batching, and the Devices view."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QModelIndex, Qt

from app.devices import DeviceTracker, format_age
from app.store import ROW_FIELDS, columns_from_rows
from ui.workspace.devices_view import (
    COL_DEVICE,
    COL_LAST_SEEN,
    COL_LOSS,
    COL_UPLINKS,
    COLUMNS,
    STALE_COLOR,
    WARN_COLOR,
    DevicesModel,
    DevicesView,
)

T0 = 1_700_000_000.0
EUI_A = "0004A30B00000001"
EUI_B = "0004A30B00000002"
COL_RESETS, COL_BEST_RSSI, COL_MEAN_SNR = COLUMNS.index("Resets"), COLUMNS.index("Best RSSI"), COLUMNS.index("Mean SNR")


def row(kind: str = "uplink", eui: str | None = EUI_A, f_cnt: int | None = None, ts: float = T0, **fields) -> tuple:
    values = {
        "id": None,
        "ts": ts,
        "platform": "tts",
        "kind": kind,
        "application_id": "app",
        "device_id": None if eui is None else f"dev-{eui[-4:].lower()}",
        "dev_eui": eui,
        "dev_addr": None,
        "f_port": 1 if kind == "uplink" else None,
        "f_cnt": f_cnt,
        "payload": None,
        "decoded": None,
        "rssi": None,
        "snr": None,
        "gateway_id": None,
        "gateways": None,
        "spreading_factor": None,
        "bandwidth_hz": None,
        "frequency_hz": None,
        "error": None,
        "topic": "t",
    }
    values.update(fields)
    return tuple(values[name] for name in ROW_FIELDS)


def ups(*counters, eui: str = EUI_A, platform: str = "tts", t: float = T0) -> list[tuple]:
    """Uplinks with these frame counters ("join" in the list: a join event)."""
    out = []
    for i, c in enumerate(counters):
        if c == "join":
            out.append(row("join", eui, ts=t + i, platform=platform))
        else:
            out.append(row("uplink", eui, c, ts=t + i, platform=platform))
    return out


def track(rows: list[tuple], tracker: DeviceTracker | None = None) -> DeviceTracker:
    tracker = tracker if tracker is not None else DeviceTracker()
    tracker.update(columns_from_rows(rows))
    return tracker


def counts(rows: list[tuple], key: str = EUI_A) -> tuple:
    s = track(rows).stats(key)
    return s.uplinks, s.missed, s.duplicates, s.resets


# ----- fCnt rules, case by case (uplinks, missed, duplicates, resets)


def test_consecutive_counters_lose_nothing():
    assert counts(ups(*range(10))) == (10, 0, 0, 0)
    s = track(ups(*range(10))).stats(EUI_A)
    assert s.loss_percent == 0.0 and s.last_f_cnt == 9


def test_gap_counts_the_frames_in_between_as_missed():
    assert counts(ups(1, 2, 5)) == (3, 2, 0, 0)
    assert counts(ups(0, 1000)) == (2, 999, 0, 0)  # a gap wider than the late-frame window


def test_same_counter_again_is_a_duplicate_not_an_uplink():
    assert counts(ups(1, 2, 2, 3)) == (3, 0, 1, 0)
    assert counts(ups(7, 7, 7)) == (1, 0, 2, 0)


def test_reset_after_join():
    assert counts(ups(10, 11, "join", 0, 1)) == (4, 0, 0, 1)
    # Whatever the counter does after a rejoin, the new session starts afresh (no gap, no duplicate).
    assert counts(ups(10, 11, "join", 11, 12)) == (4, 0, 0, 1)
    assert counts(ups(10, 11, "join", "join", 500)) == (3, 0, 0, 1)
    s = track(ups(10, 11, "join", 0, 1)).stats(EUI_A)
    assert s.joins == 1


def test_join_before_any_uplink_is_no_reset():
    assert counts(ups("join", 0, 1, 2)) == (3, 0, 0, 0)
    assert counts(ups("join", "join", 5, 6)) == (2, 0, 0, 0)


def test_reset_by_small_counter():
    assert counts(ups(100, 101, 0, 1, 2)) == (5, 0, 0, 1)
    assert counts(ups(100, 101, 1, 2)) == (4, 0, 0, 1)
    assert counts(ups(5, 1, 3)) == (3, 1, 0, 1)  # restarted at 1, then frame 2 lost


def test_16_bit_rollover_is_a_continuation_where_counters_are_16_bit():
    assert counts(ups(65534, 65535, 0, 1, platform="generic")) == (4, 0, 0, 0)
    # Frames 65531..65535 and 0..2 lost across the wrap.
    assert counts(ups(65530, 3, platform="generic")) == (2, 8, 0, 0)
    # A late frame from before the wrap still finds its place.
    assert counts(ups(65534, 1, 65535, platform="generic")) == (3, 1, 0, 0)
    # 32-bit counters (The Things Stack) do not wrap there: back to 0 is a restart.
    assert counts(ups(65534, 65535, 0, platform="tts")) == (3, 0, 0, 1)
    # The platforms with 16-bit counters are configurable.
    tracker = DeviceTracker(sixteen_bit_platforms={"tts"})
    s = track(ups(65534, 65535, 0, platform="tts"), tracker).stats(EUI_A)
    assert (s.uplinks, s.missed, s.resets) == (3, 0, 0)


def test_out_of_order_large_drop_is_a_reset():
    assert counts(ups(1000, 1001, 500, 501)) == (4, 0, 0, 1)
    assert counts(ups(1000, 1001, 500, 503)) == (4, 2, 0, 1)


def test_late_frame_fills_its_gap_and_a_repeat_of_it_is_a_duplicate():
    assert counts(ups(10, 13, 11)) == (3, 1, 0, 0)
    assert counts(ups(10, 13, 11, 11, 12)) == (4, 0, 1, 0)
    assert counts(ups(10, 11, 12, 13, 11)) == (4, 0, 1, 0)  # seen already
    # Right after a fresh start nothing before it counts as missed: back a little is a duplicate.
    assert counts(ups(100, 98)) == (1, 0, 1, 0)
    assert counts(ups(10, 11, "join", 100, 98, 101)) == (4, 0, 1, 1)


def test_uplinks_without_a_counter_count_but_have_no_loss():
    rows = [row("uplink", None, None, device_id="akenza-dev", platform="akenza") for _ in range(3)]
    s = track(rows).stats("akenza-dev")
    assert (s.uplinks, s.missed, s.loss_percent, s.last_f_cnt) == (3, 0, None, None)


# ----- loss, radio stats, identity


def test_loss_percent():
    s = track(ups("join")).stats(EUI_A)
    assert s.loss_percent is None
    s = track(ups(1, 2, 5)).stats(EUI_A)  # 2 of 5 sent never arrived
    assert s.loss_percent == pytest.approx(40.0)
    s = track(ups(1, 2, 2, 3)).stats(EUI_A)  # duplicates do not dilute the loss
    assert s.loss_percent == 0.0
    s = track(ups(*range(0, 200, 2))).stats(EUI_A)
    assert s.loss_percent == pytest.approx(99 / 199 * 100)


def test_rssi_snr_best_and_mean_ignore_missing_values():
    rows = [
        row(f_cnt=1, rssi=-100.0, snr=None, spreading_factor=9, gateway_id="gw-1"),
        row(f_cnt=2, rssi=None, snr=5.0),
        row(f_cnt=3, rssi=-80.0, snr=-5.0, spreading_factor=7, gateway_id="gw-2"),
        row(f_cnt=4, rssi=None, snr=None, f_port=None),
        row("downlink_ack", rssi=-20.0, snr=20.0),  # not an uplink: no radio stats
    ]
    s = track(rows).stats(EUI_A)
    assert s.best_rssi == -80.0 and s.mean_rssi == pytest.approx(-90.0)
    assert s.best_snr == 5.0 and s.mean_snr == pytest.approx(0.0)
    assert s.last_rssi == -80.0 and s.last_snr == -5.0  # the latest values reported
    assert (s.last_sf, s.last_gateway, s.last_f_port, s.last_f_cnt) == (7, "gw-2", 1, 4)
    empty = track(ups(1, 2)).stats(EUI_A)
    assert empty.best_rssi is None and empty.mean_rssi is None and empty.best_snr is None and empty.mean_snr is None


def test_devices_interleaved_in_one_batch():
    rows = [
        row(eui=EUI_A, f_cnt=1, ts=T0),
        row(eui=EUI_B, f_cnt=50, ts=T0 + 1),
        row(eui=None, f_cnt=7, ts=T0 + 2, device_id="no-eui"),  # keyed by device id
        row(eui=EUI_A, f_cnt=2, ts=T0 + 3),
        row(eui=EUI_B, f_cnt=53, ts=T0 + 4),
        row("error", eui=EUI_A, ts=T0 + 5, error="bad payload", f_port=None),
        row("error", eui=None, device_id=None, ts=T0 + 6, error="unparseable"),  # no device: not counted
        row("downlink_queued", eui=EUI_B, ts=T0 + 100),  # outgoing: not activity
        row(eui=EUI_A, f_cnt=2, ts=T0 + 7),
    ]
    tracker = DeviceTracker()
    changed = tracker.update(columns_from_rows(rows))
    assert changed == {EUI_A, EUI_B, "no-eui"}
    assert tracker.keys() == [EUI_A, EUI_B, "no-eui"] and len(tracker) == 3
    a, b, c = (tracker.stats(k) for k in tracker)
    assert (a.uplinks, a.missed, a.duplicates, a.errors) == (2, 0, 1, 1)
    assert (b.uplinks, b.missed, b.errors) == (2, 2, 0)
    assert (c.uplinks, c.device_id, c.dev_eui) == (1, "no-eui", None)
    assert (a.first_seen, a.last_seen) == (T0, T0 + 7)
    assert (b.first_seen, b.last_seen) == (T0 + 1, T0 + 4)
    assert a.device_id == "dev-0001" and a.platform == "tts" and a.application_id == "app"
    # A batch with only an outgoing downlink changes nothing.
    assert tracker.update(columns_from_rows([row("downlink_sent", eui=EUI_A, ts=T0 + 200)])) == set()
    assert tracker.stats(EUI_A).last_seen == T0 + 7
    assert tracker.stats("nope") is None and "nope" not in tracker and EUI_A in tracker
    assert tracker.update({}) == set()


def test_identifiers_are_filled_in_by_later_events_and_clear_starts_over():
    tracker = track([row(eui=EUI_A, f_cnt=1, device_id=None, application_id=None)])
    assert tracker.stats(EUI_A).device_id is None
    track([row(eui=EUI_A, f_cnt=2, device_id="late-name")], tracker)
    assert tracker.stats(EUI_A).device_id == "late-name" and tracker.stats(EUI_A).application_id == "app"
    generation = tracker.generation
    tracker.clear()
    assert len(tracker) == 0 and tracker.keys() == [] and tracker.generation == generation + 1


def test_format_age():
    assert format_age(math.nan) == ""
    assert format_age(-3) == "now" and format_age(0.4) == "now"
    assert format_age(3.7) == "3 s ago" and format_age(59.9) == "59 s ago"
    assert format_age(60) == "1 min ago" and format_age(300) == "5 min ago"
    assert format_age(7200) == "2 h ago" and format_age(86399) == "23 h ago"
    assert format_age(3 * 86400 + 5) == "3 d ago"


# ----- batching: any split of the stream gives the same stats

EVENT = st.one_of(
    st.tuples(
        st.just("uplink"),
        st.sampled_from([EUI_A, EUI_B, "0004A30B00000003"]),
        st.one_of(st.none(), st.integers(0, 40), st.integers(65_000, 65_535), st.integers(0, 2**32 - 1)),
        st.one_of(st.none(), st.floats(-130, -20)),
        st.one_of(st.none(), st.floats(-20, 15)),
    ),
    st.tuples(st.sampled_from(["join", "error", "downlink_queued"]), st.sampled_from([EUI_A, EUI_B]), st.none()),
)


def stream(events, platform: str) -> list[tuple]:
    rows = []
    for i, ev in enumerate(events):
        kind, eui, f_cnt = ev[:3]
        radio = {"rssi": ev[3], "snr": ev[4]} if kind == "uplink" else {}
        rows.append(row(kind, eui, f_cnt, ts=T0 + i, platform=platform, **radio))
    return rows


def snapshot(tracker: DeviceTracker) -> list[tuple]:
    return [dataclasses.astuple(tracker.stats(k)) for k in tracker]


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(EVENT, max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=6),
    platform=st.sampled_from(["tts", "generic"]),
)
def test_incremental_batches_equal_one_big_batch(events, cuts, platform):
    rows = stream(events, platform)
    whole = track(rows)
    pieces = DeviceTracker()
    bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
    changed = set()
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        changed |= pieces.update(columns_from_rows(rows[lo:hi]))
    assert snapshot(pieces) == snapshot(whole)
    assert changed == set(whole.keys()) or not rows
    for key in whole:
        s = whole.stats(key)
        uplink_rows = sum(1 for r in rows if r[3] == "uplink" and r[6] == key)
        # Every uplink row is either a distinct uplink or a duplicate; nothing is missed twice.
        assert s.uplinks + s.duplicates == uplink_rows
        assert s.missed >= 0 and s.resets <= uplink_rows
        if s.loss_percent is not None:
            assert 0.0 <= s.loss_percent < 100.0


# ----- the Qt model


def batch_of(*rows) -> dict:
    return columns_from_rows(list(rows))


def up(eui: str, f_cnt: int, ts: float = T0, **fields) -> tuple:
    return row("uplink", eui, f_cnt, ts=ts, **fields)


def eui(n: int) -> str:
    return f"0004A30B{n:08X}"


def model_with(*rows, clock: float = T0 + 10) -> DevicesModel:
    model = DevicesModel()
    model.clock = lambda: clock
    if rows:
        model.update(batch_of(*rows))
    return model


def column(model: DevicesModel, col: int) -> list[str]:
    return [model.data(model.index(r, col)) for r in range(model.rowCount())]


@pytest.mark.parametrize("force_py", [True, False])
def test_model_passes_qtmodeltester_under_inserts_and_refreshes(qtmodeltester, qtlog, force_py):
    model = model_with()
    qtmodeltester.check(model, force_py=force_py)
    model.update(batch_of(up(eui(1), 1), up(eui(2), 1)))
    model.update(batch_of(up(eui(1), 2), up(eui(3), 1), up(eui(4), 9, rssi=-70.0)))
    model.sort(COL_UPLINKS, Qt.SortOrder.DescendingOrder)
    model.update(batch_of(*(up(eui(n), 3) for n in range(1, 20))))
    model.tick()
    model.set_filter("0004a30b0000000")
    model.update(batch_of(up(eui(30), 1)))
    model.set_filter("")
    model.sort(-1)
    model.clear()
    model.update(batch_of(up(eui(1), 1)))
    model.tracker.clear()
    model.refresh(set())  # a tracker cleared behind the model's back: the model starts over
    assert model.rowCount() == 0
    assert not [r for r in qtlog.records if "FAIL" in r.message]


def test_refresh_inserts_new_devices_once_per_batch_and_updates_changed_rows(qtbot):
    model = model_with()
    inserted, changed = [], []
    model.rowsInserted.connect(lambda parent, first, last: inserted.append((first, last)))
    model.dataChanged.connect(lambda tl, br, roles=(): changed.append((tl.row(), br.row())))
    model.update(batch_of(up(eui(1), 1), up(eui(2), 1), up(eui(3), 1)))
    assert inserted == [(0, 2)] and changed == []
    model.update(batch_of(up(eui(2), 2), up(eui(4), 1), up(eui(5), 1)))
    assert inserted == [(0, 2), (3, 4)] and changed == [(1, 1)]
    model.update(batch_of(row("downlink_queued", eui(1))))
    assert changed == [(1, 1)]  # nothing changed: no signal
    assert column(model, COL_UPLINKS) == ["1", "2", "1", "1", "1"]
    assert model.key_at(1) == eui(2) and model.row_of(eui(2)) == 1 and model.key_at(99) is None


def test_sorting_by_numeric_value_with_none_last_and_stable_ties():
    rows = [up(eui(1), n, ts=T0 + n, rssi=-100.0) for n in range(9)]  # 9 uplinks
    rows += [up(eui(2), n, ts=T0 + n, rssi=-7.0) for n in range(10)]  # 10 uplinks
    rows += [up(eui(3), n, ts=T0 + n) for n in range(100)]  # 100 uplinks, no RSSI
    rows += [up(eui(4), n, ts=T0 + n, rssi=-80.0) for n in range(10)]  # 10 uplinks
    model = model_with(*rows, clock=T0 + 200)
    keys = lambda: [model.key_at(r) for r in range(model.rowCount())]  # noqa: E731
    model.sort(COL_UPLINKS, Qt.SortOrder.AscendingOrder)
    assert column(model, COL_UPLINKS) == ["9", "10", "10", "100"]  # by value, not "10" < "100" < "9"
    assert keys() == [eui(1), eui(2), eui(4), eui(3)]  # ties in first-seen order
    model.sort(COL_UPLINKS, Qt.SortOrder.DescendingOrder)
    assert keys() == [eui(3), eui(2), eui(4), eui(1)]  # ties still in first-seen order
    model.sort(COL_BEST_RSSI, Qt.SortOrder.AscendingOrder)
    assert keys() == [eui(1), eui(4), eui(2), eui(3)]  # no RSSI: last
    model.sort(COL_BEST_RSSI, Qt.SortOrder.DescendingOrder)
    assert keys() == [eui(2), eui(4), eui(1), eui(3)]  # no RSSI: last in both orders
    assert column(model, COL_BEST_RSSI) == ["-7 dBm", "-80 dBm", "-100 dBm", ""]
    model.sort(COL_LAST_SEEN, Qt.SortOrder.AscendingOrder)
    assert keys() == [eui(3), eui(2), eui(4), eui(1)]  # the most recently heard first
    model.sort(-1)
    assert keys() == [eui(1), eui(2), eui(3), eui(4)]
    model.sort(COL_LOSS, Qt.SortOrder.DescendingOrder)
    model.update(batch_of(up(eui(4), 30, ts=T0 + 50)))  # eui 4 now lost 19 of 30
    assert model.key_at(3) == eui(4)  # a refresh does not move rows ...
    model.tick()
    assert model.key_at(0) == eui(4)  # ... the next tick re-sorts


def test_sort_keeps_the_selection_on_the_same_device(qtbot):
    view = DevicesView(model_with(up(eui(1), 1), up(eui(2), 1), up(eui(2), 2), up(eui(3), 1)))
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.device_selected) as blocker:
        view.table.selectRow(0)
    assert blocker.args == [eui(1)]
    seen = []
    view.device_selected.connect(seen.append)
    view.table.sortByColumn(COL_UPLINKS, Qt.SortOrder.DescendingOrder)
    rows = view.table.selectionModel().selectedRows()
    assert [view.model.key_at(i.row()) for i in rows] == [eui(1)] and seen == []


def test_selection_emits_the_device_key_and_show_all_clears_it(qtbot):
    model = model_with(up(EUI_A, 1), up(EUI_B, 1), up(eui(77), 1))
    view = DevicesView(model)
    qtbot.addWidget(view)
    assert view.count_label.text() == "3 devices" and not view.show_all.isEnabled()
    with qtbot.waitSignal(view.device_selected) as blocker:
        view.table.selectRow(1)
    assert blocker.args == [EUI_B] and view.selected_key == EUI_B and view.show_all.isEnabled()
    with qtbot.waitSignal(view.device_selected) as blocker:
        view.show_all.click()
    assert blocker.args == [None] and not view.table.selectionModel().hasSelection()
    view.select_key(eui(77))
    assert view.selected_key == eui(77)
    # Filtering keeps a selected device that still matches ...
    view.filter_box.setText("004d")  # 77 = 0x4D
    assert view.count_label.text() == "1 of 3 devices" and view.selected_key == eui(77)
    assert view.table.selectionModel().selectedRows()[0].row() == 0
    # ... and clears the selection of one it hides.
    with qtbot.waitSignal(view.device_selected) as blocker:
        view.filter_box.setText("dev-0001")
    assert blocker.args == [None] and column(model, COL_DEVICE) == ["dev-0001"]
    view.filter_box.setText("")
    assert view.count_label.text() == "3 devices"


def test_filter_matches_device_id_and_eui_and_new_devices_respect_it():
    model = model_with(up(EUI_A, 1), up(EUI_B, 1), row(eui=None, f_cnt=1, device_id="Cellar-Sensor"))
    model.set_filter("cellar")
    assert column(model, COL_DEVICE) == ["Cellar-Sensor"]
    model.set_filter("0004a30b00000002")
    assert column(model, COL_DEVICE) == ["dev-0002"]
    model.update(batch_of(up(eui(3), 1), up("0004A30B00000002".replace("2", "9"), 1)))
    assert model.rowCount() == 1  # neither new device matches
    model.set_filter("  ")
    assert model.rowCount() == 5


def test_ages_tick_and_stale_rows_turn_grey(qtbot):
    now = [T0 + 5]
    model = model_with(up(EUI_A, 1, ts=T0), up(EUI_B, 1, ts=T0 - 4000))
    model.clock = lambda: now[0]
    assert column(model, COL_LAST_SEEN) == ["5 s ago", "1 h ago"]
    fg = Qt.ItemDataRole.ForegroundRole
    assert model.data(model.index(0, COL_DEVICE), fg) is None
    assert model.data(model.index(1, COL_DEVICE), fg) == STALE_COLOR
    changed = []
    model.dataChanged.connect(lambda tl, br, roles=(): changed.append((tl.row(), tl.column(), br.row(), br.column())))
    model.tick()
    assert (0, COL_LAST_SEEN, 1, COL_LAST_SEEN) in changed  # the ages column only
    assert (1, 0, 1, len(COLUMNS) - 1) in changed  # the row that went stale, whole
    changed.clear()
    now[0] = T0 + 3700
    model.tick()
    assert changed[0] == (0, COL_LAST_SEEN, 1, COL_LAST_SEEN) and (0, 0, 0, len(COLUMNS) - 1) in changed
    assert column(model, COL_LAST_SEEN) == ["1 h ago", "2 h ago"]
    changed.clear()
    model.tick()
    assert changed == [(0, COL_LAST_SEEN, 1, COL_LAST_SEEN)]  # nothing new went stale


def test_display_colours_and_alignment():
    rows = [up(EUI_A, n, rssi=-91.0, snr=-2.25, spreading_factor=9, gateway_id="gw-1") for n in (1, 2, 3, 20)]
    rows += [up(EUI_B, n) for n in range(40)] + [up(EUI_B, 41)]
    model = model_with(*rows)
    assert column(model, COL_LOSS) == ["80.0 % (16)", "2.4 % (1)"]
    fg = Qt.ItemDataRole.ForegroundRole
    assert model.data(model.index(0, COL_LOSS), fg) == WARN_COLOR  # over 5 %
    assert model.data(model.index(1, COL_LOSS), fg) is None
    assert [model.data(model.index(0, c)) for c in range(len(COLUMNS))] == [
        "dev-0001",
        EUI_A,
        "tts",
        "10 s ago",
        "4",
        "80.0 % (16)",
        "0",
        "0",
        "-91 dBm",
        "-91.0 dBm",
        "-2.2 dB",
        "-2.2 dB",
        "SF9",
        "gw-1",
    ]
    right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    assert model.data(model.index(0, COL_RESETS), Qt.ItemDataRole.TextAlignmentRole) == right
    assert model.data(model.index(0, COL_DEVICE), Qt.ItemDataRole.TextAlignmentRole) is None
    assert "16 uplinks missed of 20" in model.data(model.index(0, COL_LOSS), Qt.ItemDataRole.ToolTipRole)
    assert "Application: app" in model.data(model.index(0, COL_DEVICE), Qt.ItemDataRole.ToolTipRole)
    assert model.data(model.index(0, COL_MEAN_SNR), Qt.ItemDataRole.UserRole) == EUI_A
    assert model.data(QModelIndex()) is None
    assert model.headerData(COL_LOSS, Qt.Orientation.Horizontal) == "Loss % (missed)"


def test_view_renders_a_few_hundred_devices(qtbot):
    rows = [up(eui(n), c, ts=T0 + c, rssi=-60.0 - n % 50, snr=5.0) for n in range(300) for c in (1, 2, 4)]
    model = model_with(*rows)
    view = DevicesView(model)
    qtbot.addWidget(view)
    view.resize(1200, 500)
    view.show()
    qtbot.waitExposed(view)
    assert view.timer.isActive()
    view.table.sortByColumn(COL_BEST_RSSI, Qt.SortOrder.DescendingOrder)
    assert not view.grab().isNull()
    assert view.count_label.text() == "300 devices"
    view.hide()
    assert not view.timer.isActive()


def test_view_over_a_tracker_refreshed_by_its_owner(qtbot):
    # How the workspace drives it: it owns the tracker, updates it per batch, then refreshes the view.
    tracker = DeviceTracker()
    view = DevicesView(tracker)
    qtbot.addWidget(view)
    assert view.model.tracker is tracker and view.count_label.text() == "No devices yet"
    changed = tracker.update(batch_of(up(EUI_A, 1))) | tracker.update(batch_of(up(EUI_B, 1), up(EUI_A, 2)))
    view.refresh(changed)
    assert view.model.rowCount() == 2 and view.count_label.text() == "2 devices"
    view.select_key(EUI_B)
    with qtbot.waitSignal(view.device_selected) as blocker:
        tracker.clear()
        view.refresh(set())
    assert blocker.args == [None] and view.model.rowCount() == 0
    view.refresh(tracker.update(batch_of(up(EUI_B, 5))))
    assert [view.model.key_at(0)] == [EUI_B] and view.count_label.text() == "1 device"
