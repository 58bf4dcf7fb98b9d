"""Filters over a million retained rows (the table's store), in ms, with a scan reference.

Run: .venv/bin/python benchmarks/filter_text.py [rows]
Prints each filter's time and, as the reference measured in the same run, one pass of Python's
`bytes.lower` + `in` over the decoded column (what a naive per-row search costs at least)."""

from __future__ import annotations

import sys
import time

from app.platforms.tts_fast import uplink_row
from app.simulate import tts as simulate
from app.store import EventStore, Filter, columns_from_rows


def build(n: int) -> EventStore:
    store = EventStore(max_rows=n)
    chunk = [
        uplink_row(simulate.tts_topic(k % 50), simulate.tts_uplink(k % 50, k, gateways=1 + (k % 4 == 0)), 1e9 + k, k)[0]
        for k in range(20_000)
    ]
    cols = columns_from_rows(chunk)
    while len(store) < n:
        store.append_columns(cols)
    return store


def timed(fn) -> tuple[float, object]:
    best, out = 1e9, None
    for _ in range(3):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000, out


def main(n: int) -> None:
    store = build(n)
    col = store.cols["decoded"]
    ref_ms, _ = timed(lambda: sum(1 for b in col if b"humidity" in b.lower()))
    print(f"{len(store):,} rows; reference per-row scan of the decoded column: {ref_ms:.0f} ms")
    for label, flt in [
        ("device", Filter(device=simulate.dev_eui(7))),
        ("kind", Filter(kinds=frozenset({"uplink"}))),
        ("text in every row (decoded key)", Filter(text="Humidity")),
        ("text: a device id", Filter(text="env-sensor-007")),
        ("text: payload hex", Filter(text="08e9")),
        ("text: nowhere", Filter(text="no such thing")),
        ("device + text", Filter(device=simulate.dev_eui(7), text="battery")),
    ]:
        ms, out = timed(lambda flt=flt: store.matching(flt))
        print(f"{label:34s} {ms:8.1f} ms  {len(out):>9,} rows  ratio={ms / ref_ms:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
