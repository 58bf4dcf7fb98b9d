"""The ways to search the table's rows, measured on the same rows in one run (app/search.py says
which was chosen and why, with these numbers).

Run: .venv/bin/python benchmarks/search_options.py [rows]   (default 1,000,000; FTS5 on 100,000)

Rows: a simulated 400-device fleet (app.simulate.fleet, the same as `uplink-console bench search`).
Prints, per search text, the time of:
  reference   one per-row pass of bytes.lower() + `in` over the decoded column (what a naive
              search costs at least; the bench divides by it)
  old         EventStore.matching with a text filter (the table's search before the index)
  buffer      bytes.count over one joined lowercase buffer of the rows' text (a full pass)
  numpy       the same buffer, a vector compare per needle byte
  regex       re.finditer over the buffer
  index       app.search.SearchIndex (pair signatures + coded repeated values), the one chosen
and the index's build cost per row and memory, and SQLite FTS5 (trigram) build and query times
scaled from 100,000 rows."""

from __future__ import annotations

import gc
import multiprocessing
import re
import sqlite3
import statistics
import sys
import time

import numpy as np

from app.search import Query, SearchIndex, row_text
from app.store import EventStore, Filter


def load(n: int) -> EventStore:
    from ui.bench import fleet_batches

    store = EventStore(max_rows=n)
    receive, send = multiprocessing.Pipe(duplex=False)
    maker = multiprocessing.get_context("spawn").Process(target=fleet_batches, args=(n, send), daemon=True)
    maker.start()
    send.close()
    while (batch := receive.recv()) is not None:
        store.append_columns(batch)
    maker.join()
    return store


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000, out


def main(n: int) -> None:
    print(f"building {n:,} simulated rows …", flush=True)
    store = load(n)
    gc.collect()
    gc.freeze()
    c = store.cols

    index = SearchIndex(store)
    t0 = time.perf_counter()
    slices = []
    while True:
        t1 = time.perf_counter()
        if not index.catch_up():
            break
        slices.append(time.perf_counter() - t1)
    build = time.perf_counter() - t0
    memory = sum(
        len(p.buf) + p.sig.nbytes + p.ends.nbytes + sum(v.nbytes for v in p.codes.values()) for p in index.pieces
    )
    print(
        f"index: {build / n * 1e6:.2f} us a row to build ({build:.1f} s), slices of 4,096 rows: "
        f"median {statistics.median(slices) * 1000:.1f} ms, worst {max(slices) * 1000:.1f} ms; "
        f"{memory / n:.0f} bytes a row ({memory / 1e6:.0f} MB)",
        flush=True,
    )
    buf = b"".join(map(row_text, c["decoded"], c["payload"], c["error"]))
    data = np.frombuffer(buf, dtype=np.uint8)
    print(f"joined lowercase buffer of decoded, payload hex and errors: {len(buf) / 1e6:.0f} MB", flush=True)

    def numpy_find(needle: bytes):
        at = np.flatnonzero(data[: len(data) - len(needle) + 1] == needle[0])
        for k in range(1, len(needle)):
            at = at[data[at + k] == needle[k]]
        return at

    texts = ["humidity", "23.27", "gps-tracker-042", "0917", "no-such-sensor"]
    ratios = []
    for text in texts:
        needle = text.lower().encode()
        ref, _ = timed(lambda needle=needle: sum(1 for b in c["decoded"] if needle in b.lower()), 1)
        old, old_rows = timed(lambda text=text: store.matching(Filter(text=text)), 1)
        flat, _ = timed(lambda needle=needle: buf.count(needle))
        vec, _ = timed(lambda needle=needle: numpy_find(needle))
        pattern = re.compile(re.escape(needle))
        rx, _ = timed(lambda pattern=pattern: sum(1 for _ in pattern.finditer(buf)), 1)
        chosen, rows = timed(lambda text=text: index.search(Query(text)).run())
        ratios.append(chosen / ref)
        print(
            f"{text!r:18s} reference {ref:6.0f} ms | old {old:6.0f} ms ({len(old_rows):,} rows) | "
            f"buffer {flat:5.1f} ms | "
            f"numpy {vec:5.1f} ms | regex {rx:5.0f} ms | index {chosen:5.1f} ms ({len(rows):,} rows) "
            f"ratio={chosen / ref:.3f}",
            flush=True,
        )
    for pattern in (r"temp.*23\.2", r"^0917"):
        ms, rows = timed(lambda pattern=pattern: index.search(Query(pattern, regex=True)).run(), 1)
        print(f"regex {pattern!r:18s} index {ms:6.0f} ms ({len(rows):,} rows)", flush=True)
    print(f"median index ratio {statistics.median(ratios):.3f}", flush=True)
    fts(store, min(n, 100_000))


def fts(store: EventStore, n: int) -> None:
    """SQLite FTS5 with the trigram tokenizer (the one that answers substring searches)."""
    c = store.cols
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE rows USING fts5(body, tokenize='trigram')")
    texts = [
        (
            " ".join(filter(None, (c[k][i] for k in ("device_id", "dev_eui", "topic", "gateway_id", "error"))))
            + " "
            + c["decoded"][i].decode()
            + " "
            + c["payload"][i].hex(),
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    db.executemany("INSERT INTO rows (body) VALUES (?)", texts)
    db.commit()
    build = time.perf_counter() - t0
    pages = db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
    text_bytes = sum(len(t[0]) for t in texts)
    print(
        f"FTS5 trigram over {n:,} rows: {build / n * 1e6:.1f} us a row to build, "
        f"{pages / text_bytes:.1f}x the text's size",
        flush=True,
    )
    for text in ("humidity", "23.27", "gps-tracker-042", "0917", "no-such-sensor"):
        ms, rows = timed(
            lambda text=text: db.execute("SELECT rowid FROM rows WHERE body LIKE ?", (f"%{text}%",)).fetchall()
        )
        print(f"  {text!r:18s} {ms:7.1f} ms ({len(rows):,} rows; x{store.__len__() / n:.0f} for all rows)", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
