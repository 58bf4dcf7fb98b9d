"""TTS uplinks to table rows: the full parser + event_row against the fast path (µs a message).

Run: .venv/bin/python benchmarks/parse_fast.py  — prints both and their ratio, measured in the
same run on the same simulated messages (~890 bytes, 1-2 gateways); then what the live path adds
around them: body_problem on the published uplink sample (as compact JSON), and one 4,000-row batch
from rows to the store (columns_from_rows and pickling in the engine, unpickling and
append_columns in the window's process)."""

from __future__ import annotations

import pickle
import time
import timeit
from pathlib import Path

import orjson

from app import platforms
from app.platforms.base import body_problem
from app.platforms.tts_fast import uplink_row
from app.simulate import tts as simulate
from app.store import EventStore, columns_from_rows, event_row

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "samples" / "tts_up_1.json"


def main(n: int = 20_000, rounds: int = 5) -> None:
    tts = platforms.get("tts")
    msgs = [
        (simulate.tts_topic(i % 50), simulate.tts_uplink(i % 50, i, gateways=2 if i % 4 == 0 else 1)) for i in range(n)
    ]

    def full() -> None:
        for topic, body in msgs:
            for event in tts.parse_or_error(topic, body):
                event_row(event, 1.0, 1)

    def fast() -> None:
        for topic, body in msgs:
            uplink_row(topic, body, 1.0, 1)

    best = {}
    for _ in range(rounds):
        for name, fn in (("full", full), ("fast", fast)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best.get(name, 1e9), (time.perf_counter() - t0) / n * 1e6)
    print(f"full parser + event_row: {best['full']:.1f} us/msg")
    print(f"fast path:               {best['fast']:.1f} us/msg")
    print(f"speedup={best['full'] / best['fast']:.2f}")

    sample = orjson.dumps(orjson.loads(SAMPLE.read_bytes()))
    loops = 200_000
    guard = min(timeit.repeat(lambda: body_problem(sample), number=loops, repeat=5)) / loops * 1e9
    print(f"body_problem on the {len(sample)}-byte TTS sample: {guard:.0f} ns")

    rows = [uplink_row(topic, body, 1.0 + i, i)[0] for i, (topic, body) in enumerate(msgs[:4000])]
    batch = columns_from_rows(rows)
    blob = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)

    def window() -> None:
        EventStore().append_columns(pickle.loads(blob))

    def timed(fn) -> float:
        return min(timeit.repeat(fn, number=1, repeat=20)) * 1e3

    build = timed(lambda: columns_from_rows(rows))
    dump = timed(lambda: pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    print(
        f"4,000-row batch: engine {build:.2f} ms columns_from_rows + {dump:.2f} ms pickle; "
        f"window {timed(window):.2f} ms unpickle + append_columns ({len(blob) / 1e3:.0f} kB)"
    )


if __name__ == "__main__":
    main()
