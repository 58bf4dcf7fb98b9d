"""The columnar uplink store: appends, trimming, indexes and filters agree with a plain list."""

from __future__ import annotations

import math
import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.store import FLOAT_COLS, INT_COLS, NONE_INT, ROW_FIELDS, EventStore, Filter, columns_from_rows, row_problem

DEVICES = ["0004A30B00000001", "0004A30B00000002", None]
KINDS = ["uplink", "join", "downlink_ack", "error"]


def make_row(i: int, rnd: random.Random) -> tuple:
    eui = rnd.choice(DEVICES)
    values = {
        "id": i,
        "ts": 1_700_000_000 + i,
        "platform": "tts",
        "kind": rnd.choice(KINDS),
        "application_id": "app",
        "device_id": None if eui else f"dev-{rnd.randrange(3)}",
        "dev_eui": eui,
        "dev_addr": "260B0001",
        "f_port": rnd.choice([1, 2, None]),
        "f_cnt": i,
        "payload": bytes([i % 256, 0xAB]),
        "decoded": b'{"temp":%d}' % (i % 50) if i % 3 else None,
        "rssi": -float(rnd.randrange(40, 120)),
        "snr": rnd.choice([7.5, None]),
        "gateway_id": rnd.choice(["gw-a", "gw-b"]),
        "gateways": 2,
        "spreading_factor": 7,
        "bandwidth_hz": 125000,
        "frequency_hz": 868100000,
        "error": "boom" if i % 17 == 0 else None,
        "topic": f"v3/app/devices/d{i % 4}/up",
    }
    return tuple(values[name] for name in ROW_FIELDS)


def reference(rows, flt: Filter) -> list[int]:
    out = []
    for pos, r in rows:
        d = dict(zip(ROW_FIELDS, r, strict=True))
        key = d["dev_eui"] or d["device_id"]
        if flt.device is not None and key != flt.device:
            continue
        if flt.kinds and d["kind"] not in flt.kinds:
            continue
        if flt.f_port is not None and d["f_port"] != flt.f_port:
            continue
        if flt.gateway and d["gateway_id"] != flt.gateway:
            continue
        if flt.text:
            n = flt.text.lower()
            hay = [d["device_id"], d["dev_eui"], d["topic"], d["gateway_id"], d["error"]]
            hit = any(h is not None and n in h.lower() for h in hay)
            hit = hit or (d["decoded"] is not None and n.encode() in d["decoded"].lower())
            hx = n.replace(" ", "")
            hit = hit or (
                len(hx) % 2 == 0
                and all(c in "0123456789abcdef" for c in hx)
                and bool(hx)
                and hx in d["payload"].hex()
                and len(hx) % 2 == 0
                and bytes.fromhex(hx) in d["payload"]
            )
            if not hit:
                continue
        out.append(pos)
    return out


filters = st.builds(
    Filter,
    device=st.sampled_from([None, *DEVICES[:2], "dev-1", "nobody"]),
    kinds=st.frozensets(st.sampled_from(KINDS), max_size=2),
    f_port=st.sampled_from([None, 1, 2]),
    gateway=st.sampled_from([None, "gw-a"]),
    text=st.sampled_from(["", 'temp":4', "DEV-2", "boom", "ab", "0004a30b00000002", "zz"]),
)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 400), max_rows=st.integers(1, 200), flt=filters)
def test_filters_match_a_plain_reference(seed, n, max_rows, flt):
    rnd = random.Random(seed)
    store = EventStore(max_rows=max_rows, trim_chunk=max(1, max_rows // 10))
    kept: list[tuple[int, tuple]] = []
    for start in range(0, n, 37):
        rows = [make_row(i, rnd) for i in range(start, min(n, start + 37))]
        store.append_columns(columns_from_rows(rows))
        kept += [(start + j, r) for j, r in enumerate(rows)]
    kept = [(p, r) for p, r in kept if p >= store.base]
    assert len(store) == len(kept) <= max_rows + max(1, max_rows // 10)
    assert list(store.matching(flt)) == reference(kept, flt)
    if kept:
        mid = kept[len(kept) // 2][0]
        assert list(store.matching(flt, start=mid)) == [p for p in reference(kept, flt) if p >= mid]


def test_values_round_trip_with_missing_fields():
    rnd = random.Random(1)
    rows = [make_row(i, rnd) for i in range(5)]
    store = EventStore()
    store.append_rows(rows)
    for pos, row in enumerate(rows):
        assert store.row(pos) == dict(zip(ROW_FIELDS, row, strict=True)) | {
            "decoded": row[ROW_FIELDS.index("decoded")] or None
        }


def test_trimming_keeps_positions_and_indexes_valid():
    rnd = random.Random(2)
    store = EventStore(max_rows=100, trim_chunk=10)
    for start in range(0, 1000, 50):
        store.append_rows([make_row(i, rnd) for i in range(start, start + 50)])
    assert store.base + len(store) == 1000
    assert 100 <= len(store) <= 110
    for key, positions in store.device_index.items():
        assert all(store.base <= p < store.end for p in positions)
        assert all((store.value(p, "dev_eui") or store.value(p, "device_id")) == key for p in positions)
    assert store.value(store.end - 1, "f_cnt") == 999


# ----- columns the store can always take; appends that are all or nothing ------------------------

F = {name: i for i, name in enumerate(ROW_FIELDS)}


def good_rows(n: int = 6) -> list[tuple]:
    rnd = random.Random(7)
    return [make_row(i, rnd) for i in range(n)]


def with_value(row: tuple, name: str, value) -> tuple:
    row = list(row)
    row[F[name]] = value
    return tuple(row)


def snapshot(store: EventStore):
    return (
        {name: col.tobytes() if isinstance(col, array) else list(col) for name, col in store.cols.items()},
        {key: list(p) for key, p in store.device_index.items()},
        store.total_appended,
        store.base,
    )


def assert_consistent(store: EventStore) -> None:
    lengths = {name: len(col) for name, col in store.cols.items()}
    assert len(set(lengths.values())) == 1, lengths


def test_numbers_travel_as_typed_arrays_and_good_rows_are_left_alone():
    rows = good_rows()
    kept = list(rows)
    cols = columns_from_rows(rows)
    assert rows == kept and all(a is b for a, b in zip(rows, kept, strict=True))
    assert all(type(cols[n]) is array and cols[n].typecode == "q" for n in INT_COLS)
    assert all(type(cols[n]) is array and cols[n].typecode == "d" for n in FLOAT_COLS)
    assert list(cols) == [*ROW_FIELDS, "device_key"]
    store = EventStore()
    store.append_columns(cols)
    assert [store.row(p) for p in range(len(rows))] == [
        dict(zip(ROW_FIELDS, r, strict=True)) | {"decoded": r[F["decoded"]] or None} for r in rows
    ]


UNSTORABLE = [
    ("f_port", 99999999999999999999, "beyond the table's 64-bit integers"),
    ("f_cnt", -(2**63) - 1, "beyond the table's 64-bit integers"),
    ("frequency_hz", NONE_INT, "keeps to mean missing"),
    ("gateways", 2.0, "not a whole number"),
    ("spreading_factor", "7", "not a whole number"),
    ("id", [1], "not a whole number"),
    ("rssi", math.inf, "not a finite number"),
    ("snr", math.nan, "not a finite number"),
    ("rssi", "-80", "not a number"),
    ("ts", 10**400, "beyond the table's 64-bit floating-point numbers"),
    ("device_id", 17, "not text"),
    ("dev_eui", b"0004A30B", "not text"),
    ("topic", ["a"], "not text"),
    ("error", "\ud800", "lone surrogate"),
    ("payload", "ab", "not bytes"),
    ("decoded", bytearray(b"{}"), "not bytes"),
    ("decoded", memoryview(b"{}"), "not bytes"),
]


@pytest.mark.parametrize(("name", "value", "why"), UNSTORABLE)
def test_a_row_the_table_cannot_hold_becomes_an_error_row_in_place(name, value, why):
    rows = good_rows()
    bad = with_value(rows[3], name, value)
    rows[3] = bad
    cols = columns_from_rows(rows)
    repaired = rows[3]
    assert repaired is not bad and repaired[F["kind"]] == "error"
    assert f"The {name} value" in repaired[F["error"]] and why in repaired[F["error"]]
    for kept in ("id", "ts", "platform", "topic"):
        if kept != name:
            assert repaired[F[kept]] == bad[F[kept]], kept
    assert row_problem(repaired) is None
    store = EventStore()
    store.append_columns(cols)
    assert_consistent(store)
    assert len(store) == 6 and store.value(3, "kind") == "error"
    assert [store.value(p, "kind") for p in (0, 1, 2, 4, 5)] == [rows[p][F["kind"]] for p in (0, 1, 2, 4, 5)]


@pytest.mark.parametrize("row", [(1, 2.0), (*good_rows(1)[0], "extra"), None, 5, "a row"])
def test_rows_of_the_wrong_shape_become_error_rows(row):
    rows = [*good_rows(2), row]
    cols = columns_from_rows(rows)
    assert rows[2][F["kind"]] == "error" and "row" in rows[2][F["error"]].lower()
    store = EventStore()
    store.append_columns(cols)
    assert_consistent(store)
    assert len(store) == 3


BROKEN_BATCHES = [
    ("a value an int column cannot take", lambda b: b.__setitem__("f_cnt", [1, 2, "x", 4, 5, 6])),
    ("an int beyond 64 bits", lambda b: b.__setitem__("f_port", [1, 2, 3, 4, 5, 2**64])),
    ("a float column with text", lambda b: b.__setitem__("rssi", [1.0, 2.0, 3.0, "x", 5.0, 6.0])),
    ("an unhashable interned value", lambda b: b["device_id"].__setitem__(4, ["unhashable"])),
    ("an unhashable device key", lambda b: b["device_key"].__setitem__(5, {"k": 1})),
    ("a column missing", lambda b: b.pop("topic")),
    ("a column of another length", lambda b: b["error"].append(None)),
    ("a column that is no sequence", lambda b: b.__setitem__("payload", 7)),
]


@pytest.mark.parametrize(("what", "break_it"), BROKEN_BATCHES, ids=[w for w, _ in BROKEN_BATCHES])
def test_append_columns_is_all_or_nothing(what, break_it):
    store = EventStore()
    store.append_columns(columns_from_rows(good_rows()))
    before = snapshot(store)
    batch = columns_from_rows([(100 + i, *r[1:]) for i, r in enumerate(good_rows())])
    batch = {k: (list(v) if isinstance(v, array) and k == "f_port" else v) for k, v in batch.items()}
    break_it(batch)
    with pytest.raises(ValueError) as info:
        store.append_columns(batch)
    text = str(info.value)
    assert text.startswith("A batch of") and text.endswith(".") and "\n" not in text
    assert_consistent(store)
    assert snapshot(store) == before
    store.append_columns(columns_from_rows(good_rows()))  # and it goes on
    assert_consistent(store)
    assert len(store) == 12 and store.total_appended == 12


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(ROW_FIELDS),
            st.sampled_from([2**63, -(2**63) - 1, NONE_INT, math.inf, -math.inf, math.nan, "x", b"y", 1.5, None])
            | st.integers(-(2**70), 2**70)
            | st.floats()
            | st.text(max_size=3)
            | st.binary(max_size=3),
        ),
        max_size=6,
    )
)
def test_any_values_anywhere_columns_always_fit_the_store(changes):
    rows = good_rows()
    for i, name, value in changes:
        rows[i] = with_value(rows[i], name, value)
    expected_bad = {i for i, r in enumerate(rows) if row_problem(r) is not None}
    original = list(rows)
    store = EventStore()
    store.append_columns(columns_from_rows(rows))
    assert_consistent(store)
    assert len(store) == 6
    for i in range(6):
        if i in expected_bad:
            assert rows[i][F["kind"]] == "error" and store.value(i, "kind") == "error"
        else:
            assert rows[i] is original[i]
