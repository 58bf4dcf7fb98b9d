"""The columnar uplink store: appends, trimming, indexes and filters agree with a plain list."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from app.store import ROW_FIELDS, EventStore, Filter, columns_from_rows

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
