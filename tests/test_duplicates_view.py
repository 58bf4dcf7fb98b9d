"""Redelivery shown, not hidden: the MQTT DUP flag through the store, the table's mark, the details
pane, and the "Hide duplicates" filter that hides (and counts) redeliveries and platform-level
duplicates without dropping a row."""

from __future__ import annotations

import pickle
from array import array

import pytest
from PySide6.QtCore import Qt

from app.store import FLAG_COLS, ROW_FIELDS, EventStore, columns_from_rows


def uplink(i: int, device: str = "0004A30B00000001", f_cnt: int | None = None, **over) -> tuple:
    values = dict.fromkeys(ROW_FIELDS)
    values.update(
        id=i,
        ts=1_700_000_000.0 + i,
        platform="tts",
        kind="uplink",
        device_id=f"dev-{device[-2:]}",
        dev_eui=device,
        f_port=1,
        f_cnt=i if f_cnt is None else f_cnt,
        payload=bytes([i % 256]),
        decoded=b'{"n":%d}' % i,
        topic="v3/app/devices/d/up",
    )
    values.update(over)
    return tuple(values[name] for name in ROW_FIELDS)


# ----- the store's dup column ----------------------------------------------------------------


def test_dup_column_round_trip_through_columns_and_append():
    rows = [uplink(i) for i in range(6)]
    flags = [0, 1, 0, 0, 1, 1]
    cols = columns_from_rows(rows, dup=flags)
    assert type(cols["dup"]) is array and cols["dup"].typecode == "B"
    cols = pickle.loads(pickle.dumps(cols))  # as it crosses the engine's pipe
    store = EventStore()
    store.append_columns(cols)
    assert [store.is_dup(p) for p in range(store.base, store.end)] == [bool(f) for f in flags]
    assert list(store.cols["dup"]) == flags


def test_a_batch_without_dup_column_means_no_redelivery():
    store = EventStore()
    cols = columns_from_rows([uplink(i) for i in range(3)])
    assert "dup" not in cols  # the batch the engine makes today is unchanged
    store.append_columns(cols)
    store.append_columns(columns_from_rows([uplink(3), uplink(4)], dup=[True, False]))
    store.append_columns(columns_from_rows([uplink(5)]))
    assert [store.is_dup(p) for p in range(store.base, store.end)] == [False, False, False, True, False, False]
    assert all(len(store.cols[name]) == len(store) for name in FLAG_COLS)


def test_dup_given_as_a_list_is_taken_as_flags():
    store = EventStore()
    cols = columns_from_rows([uplink(0), uplink(1)])
    cols["dup"] = [False, 7]  # any truth value, stored as 0/1
    store.append_columns(cols)
    assert list(store.cols["dup"]) == [0, 1]


def test_dup_column_of_the_wrong_length_is_refused_whole():
    store = EventStore()
    store.append_columns(columns_from_rows([uplink(0)], dup=[1]))
    cols = columns_from_rows([uplink(1), uplink(2)])
    cols["dup"] = array("B", [1])
    with pytest.raises(ValueError, match="dup column"):
        store.append_columns(cols)
    assert len(store) == 1 and list(store.cols["dup"]) == [1]
    with pytest.raises(ValueError, match="DUP flags"):
        columns_from_rows([uplink(1), uplink(2)], dup=[1])


def test_dup_survives_a_repaired_row_and_trimming():
    bad = list(uplink(1))
    bad[ROW_FIELDS.index("f_cnt")] = 2**70  # the table cannot hold it: an error row
    rows = [uplink(0), tuple(bad), uplink(2)]
    cols = columns_from_rows(rows, dup=[0, 1, 0])
    assert rows[1][ROW_FIELDS.index("kind")] == "error"
    store = EventStore(max_rows=4, trim_chunk=2)
    store.append_columns(cols)
    assert [store.is_dup(p) for p in range(3)] == [False, True, False]
    store.append_columns(columns_from_rows([uplink(3), uplink(4), uplink(5)], dup=[1, 0, 1]))
    assert store.base == 2
    assert [store.is_dup(p) for p in range(store.base, store.end)] == [False, True, False, True]
    store.clear()
    assert len(store.cols["dup"]) == 0


# ----- the window: the mark, the details pane, "Hide duplicates" -------------------------------


def workspace_with_duplicates(qtbot):
    from ui.workspace.platform_workspace import PlatformWorkspace

    ws = PlatformWorkspace()
    qtbot.addWidget(ws)
    rows = [
        uplink(0, f_cnt=10),
        uplink(1, f_cnt=11),
        uplink(2, f_cnt=11),  # the platform forwarded frame 11 again
        uplink(3, device="0004A30B00000002", f_cnt=11),  # another device's 11: not a duplicate
        uplink(4, f_cnt=12),  # redelivered by the broker (DUP)
        uplink(5, f_cnt=12),  # and its copy counts as a repeat too
        uplink(6, kind="join", f_cnt=None, f_port=None),
        uplink(7, f_cnt=11),  # after a join the counters start afresh
    ]
    ws.ingest([columns_from_rows(rows, dup=[0, 0, 0, 0, 1, 0, 0, 0])])
    ws.model.announce()
    return ws


def kind_texts(model) -> list[str]:
    from ui.workspace.uplink_table import COL

    return [model.data(model.index(r, COL["kind"])) for r in range(model.rowCount())]


def test_rows_delivered_twice_are_marked_in_the_table(qtbot):
    from ui.workspace.uplink_table import COL, DUP_TOOLTIP, REPEAT_TOOLTIP

    ws = workspace_with_duplicates(qtbot)
    model = ws.model
    texts = kind_texts(model)
    assert [("DUP" in t, "again" in t) for t in texts] == [
        (False, False),
        (False, False),
        (False, True),
        (False, False),
        (True, False),
        (False, True),
        (False, False),
        (False, False),
    ]
    tip = model.data(model.index(4, COL["kind"]), Qt.ItemDataRole.ToolTipRole)
    assert tip == DUP_TOOLTIP == "redelivered by the broker (MQTT DUP flag)"
    assert model.data(model.index(2, COL["kind"]), Qt.ItemDataRole.ToolTipRole) == REPEAT_TOOLTIP
    assert model.data(model.index(0, COL["kind"]), Qt.ItemDataRole.ToolTipRole) is None


def test_the_details_pane_says_a_row_was_delivered_twice(qtbot):
    from ui.workspace.details_pane import DUP_LINE, REPEAT_LINE

    ws = workspace_with_duplicates(qtbot)
    ws.show()
    ws.show_details(ws.model.position(4))
    assert ws.details.redelivery.isVisible() and ws.details.redelivery.text() == DUP_LINE
    ws.show_details(ws.model.position(2))
    assert ws.details.redelivery.text() == REPEAT_LINE
    ws.show_details(ws.model.position(0))
    assert not ws.details.redelivery.isVisible()


def test_hide_duplicates_hides_and_counts_but_never_drops(qtbot):
    ws = workspace_with_duplicates(qtbot)
    bar, model = ws.filter_bar, ws.model
    bar.hide_duplicates.setChecked(True)
    shown = [model.position(r) for r in range(model.rowCount())]
    assert shown == [0, 1, 3, 6, 7]
    assert bar.hidden.text() == "3 hidden"
    assert len(ws.store) == 8  # kept in memory, only not shown
    # Rows arriving: a redelivery stays hidden, the count follows.
    ws.ingest([columns_from_rows([uplink(8, f_cnt=13), uplink(9, f_cnt=13)], dup=[0, 1])])
    model.announce()
    assert [model.position(r) for r in range(model.rowCount())] == [0, 1, 3, 6, 7, 8]
    assert bar.hidden.text() == "4 hidden"
    # With a search too (the search leaves them out the same way).
    bar.text.setText("dev-01")
    bar._debounce.stop()
    bar.apply()
    qtbot.waitUntil(lambda: not model.searching)
    assert [model.position(r) for r in range(model.rowCount())] == [0, 1, 6, 7, 8]
    bar.text.setText("")
    bar._debounce.stop()
    bar.apply()
    bar.hide_duplicates.setChecked(False)
    assert model.rowCount() == 10 and bar.hidden.text() == ""
