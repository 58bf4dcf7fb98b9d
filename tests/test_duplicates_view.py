"""Redelivery shown, not hidden: the MQTT DUP flag through the store, the table's mark, the details
pane, and the "Hide duplicates" filter that hides (and counts) redeliveries and platform-level
duplicates without dropping a row."""

from __future__ import annotations

import pickle
from array import array

import pytest

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
