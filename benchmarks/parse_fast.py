"""TTS uplinks to table rows: the full parser + event_row against the fast path (µs a message).

Run: .venv/bin/python benchmarks/parse_fast.py  — prints both and their ratio, measured in the
same run on the same simulated messages (~890 bytes, 1-2 gateways)."""

from __future__ import annotations

import time

from app import platforms, simulate
from app.platforms.tts_fast import uplink_row
from app.store import event_row


def main(n: int = 20_000, rounds: int = 5) -> None:
    tts = platforms.get("tts")
    msgs = [
        (simulate.tts_topic(i % 50), simulate.tts_uplink(i % 50, i, gateways=2 if i % 4 == 0 else 1))
        for i in range(n)
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


if __name__ == "__main__":
    main()
