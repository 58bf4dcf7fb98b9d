"""Long fuzzing: every platform parser, the TTS fast path and the store append, together, for minutes.

The unit tests fuzz each piece for a few hundred examples (hypothesis, seconds). This runs the
whole receive path the engine runs (app/mqtt/process.py `take`) for as long as asked: real
messages (the published samples in /work/shared/samples/ and tests/samples/, and the simulators'
messages of every platform, app/simulate/) are mutated by a seeded mutator and fed to

    platform.parse_or_error(topic, body, properties) -> event_row(...) per event
    tts_fast.uplink_row(topic, body, ts, id)          (TTS topics: the engine's fast path)
    columns_from_rows(rows) -> EventStore.append_columns(batch)   (a batch of ~500 messages)

checking the invariants the tests check: nothing raises; every message gives at least one event
and one row per event; no event is a parser bug caught by the safety net (parse_or_error's "The
console's X parser failed on this message" sentence means a parser raised something it did not
mean to); a row the fast path builds is the full parser's row; every column of a batch has one
value per row; the store grows by exactly the batch.

Mutations: byte flips, inserts, deletes and truncation; JSON value swaps (a value replaced by a
hostile one: huge or out-of-range numbers, wrong types, deep nesting, lone surrogates, long
strings), keys deleted, values swapped between two places; raw number tokens replaced by ones no
float holds; the whole body wrapped in brackets near and past the depth limit; MQTT 5 properties
of the wrong types.

    .venv/bin/python benchmarks/fuzz.py [--minutes M] [--seed S] [--failures DIR]

Last line: fuzz_messages=N fuzz_rate=R failures=F (F = distinct failing invariants). A failing
message is written to DIR (default: a temp dir) with its topic, so it can be replayed. The CI keeps
a bounded slice (tests/test_fuzz_slice.py, `run(seconds=...)`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from app import platforms  # noqa: E402
from app.platforms.base import MAX_DEPTH  # noqa: E402
from app.platforms.tts_fast import uplink_row  # noqa: E402
from app.simulate.fleet import FleetOptions  # noqa: E402
from app.simulate.run import PLATFORMS, make_simulator  # noqa: E402
from app.store import ROW_FIELDS, EventStore, columns_from_rows, event_row  # noqa: E402

SAMPLE_DIRS = (Path("/work/shared/samples"), ROOT / "tests" / "samples")
BATCH_MESSAGES = 500  # messages per columns_from_rows + append_columns, like an engine batch
URL = "mqtt://127.0.0.1:1883"
BUG_MARK = "parser failed on this message"  # base.unexpected_error_text: a parser raised by mistake
KIND = ROW_FIELDS.index("kind")

HOSTILE_RAW = [
    b"1e400",
    b"-1e400",
    b"1" + b"0" * 400,
    b"99999999999999999999",
    str(2**63).encode(),
    str(2**64).encode(),
    str(-(2**62)).encode(),
    str(-(2**63) - 1).encode(),
    b"1e-400",
    b"-0",
    b"0.0",
    b"256",
    b"-1",
    str(2**32).encode(),
    b"NaN",
    b"Infinity",
    b'"\\ud800"',
    b'"\\u0000"',
]


def hostile_values(rnd: random.Random):
    """A JSON value of a kind the parsers do not expect in this place."""
    choice = rnd.randrange(16)
    if choice == 0:
        return rnd.choice([2**63, 2**64, -(2**63), -(2**62), 2**62 + rnd.randrange(1000), 10**30])
    if choice == 1:
        return rnd.choice([1e308, -1e308, 5e-324, -0.0, 0.1, 1e16])
    if choice == 2:
        return rnd.choice(["", " ", "x" * rnd.randrange(1, 5000), "\u0000", "\ufeff", "é" * 50, "𝄞"])
    if choice == 3:
        return rnd.choice([None, True, False])
    if choice == 4:
        return []
    if choice == 5:
        return {}
    if choice == 6:
        depth = rnd.choice([5, 50, MAX_DEPTH - 8, MAX_DEPTH + 8, 400])
        value: object = rnd.randrange(10)
        for _ in range(depth):
            value = [value] if rnd.random() < 0.5 else {"a": value}
        return value
    if choice == 7:
        return rnd.randrange(-1000, 1000)
    if choice == 8:
        return "".join(rnd.choice("0123456789abcdefABCDEF") for _ in range(rnd.randrange(0, 40)))
    if choice == 9:
        return rnd.choice(
            ["2024-13-45T99:99:99Z", "1970-01-01T00:00:00Z", "not a time", "9999-12-31T23:59:59.999999999Z"]
        )
    if choice == 10:
        return rnd.choice(["AAAA", "not base64!", "====", "QUJD" * 2000, ""])
    if choice == 11:
        return [rnd.randrange(256) for _ in range(rnd.randrange(0, 20))]
    if choice == 12:
        return {str(rnd.randrange(5)): rnd.random() for _ in range(rnd.randrange(0, 6))}
    if choice == 13:
        return rnd.choice(["uplink", "up", "join", "downlink", "DevEUI_uplink", "location"])
    if choice == 14:
        return rnd.uniform(-1e6, 1e6)
    return rnd.choice(["0000000000000000", "FFFFFFFFFFFFFFFF", "zz", "70B3D57ED0000000"])


def paths(node, prefix=(), depth: int = 12):
    """Every place in a document down to `depth` levels (deeper ones are left as they are)."""
    yield prefix
    if len(prefix) >= depth:
        return
    if isinstance(node, dict):
        for key, child in node.items():
            yield from paths(child, (*prefix, key), depth)
    elif isinstance(node, list):
        for i, child in enumerate(node[:50]):
            yield from paths(child, (*prefix, i), depth)


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _set(doc, path, value):
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def mutate_json(doc, rnd: random.Random):
    """A copy of doc with 1-4 changes: values retyped, keys deleted, values swapped, keys added."""
    doc = copy.deepcopy(doc)
    for _ in range(rnd.randint(1, 4)):
        where = list(paths(doc))
        path = rnd.choice(where)
        action = rnd.randrange(4)
        if action == 0 or not path:
            doc = _set(doc, path, hostile_values(rnd))
        elif action == 1:
            parent = _get(doc, path[:-1])
            del parent[path[-1]]
        elif action == 2:
            other = rnd.choice(where)
            if other and other[: len(path)] != path and path[: len(other)] != other:
                a, b = _get(doc, path), _get(doc, other)
                doc = _set(doc, path, copy.deepcopy(b))
                doc = _set(doc, other, copy.deepcopy(a))
        else:
            target = _get(doc, path)
            if isinstance(target, dict):
                target[rnd.choice(["uplink_message", "decoded_payload", "rx_metadata", "f_cnt", "DevEUI", "x"])] = (
                    hostile_values(rnd)
                )
            elif isinstance(target, list):
                target.append(hostile_values(rnd))
    return doc


def mutate_bytes(body: bytes, rnd: random.Random) -> bytes:
    data = bytearray(body)
    action = rnd.randrange(6)
    if action == 0 and data:  # bit flips
        for _ in range(rnd.randint(1, 8)):
            i = rnd.randrange(len(data))
            data[i] ^= 1 << rnd.randrange(8)
    elif action == 1 and data:  # truncation
        del data[rnd.randrange(len(data)) :]
    elif action == 2:  # inserts of structural bytes
        for _ in range(rnd.randint(1, 5)):
            data[rnd.randrange(len(data) + 1) : 0] = rnd.choice(
                [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\xff"]
            )
    elif action == 3 and data:  # deletes
        for _ in range(rnd.randint(1, 5)):
            if data:
                i = rnd.randrange(len(data))
                del data[i : i + rnd.randint(1, 8)]
    elif action == 4:  # a number token replaced by one no float or 64-bit int holds
        digits = [i for i, ch in enumerate(data) if 48 <= ch <= 57 and (i == 0 or not 48 <= data[i - 1] <= 57)]
        if digits:
            i = rnd.choice(digits)
            j = i
            while j < len(data) and (48 <= data[j] <= 57 or data[j] in b".eE+-"):
                j += 1
            data[i:j] = rnd.choice(HOSTILE_RAW)
    else:  # invalid UTF-8 or a NUL inside a string
        quotes = [i for i, ch in enumerate(data) if ch == 34]
        if quotes:
            i = rnd.choice(quotes) + 1
            data[i:i] = rnd.choice([b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xf4\x90\x80\x80", b"\\ud800"])
    return bytes(data)


def nest(body: bytes, rnd: random.Random) -> bytes:
    # Past the limit the body guard measures the whole body: a 100,000-deep one costs ~10 ms.
    depth = 100_000 if rnd.random() < 0.02 else rnd.choice([MAX_DEPTH - 2, MAX_DEPTH, MAX_DEPTH + 1, 1000])
    if rnd.random() < 0.5:
        return b"[" * depth + body + b"]" * depth
    return b'{"a":' * depth + body + b"}" * depth


def hostile_properties(rnd: random.Random):
    return rnd.choice(
        [
            None,
            {},
            {"content_type": "application/json"},
            {"content_type": 5},
            {"user_properties": [["ce_type", "io.drogue.event.v1"], ["ce_subject", "up"]]},
            {"user_properties": [["a"], ["b", 1, 2], "x"]},
            {"user_properties": None},
            {"user_properties": [[1, 2]]},
            {"content_type": None, "user_properties": [["content-type", "application/octet-stream"]]},
            {"correlation_data": b"\xff\x00"},
        ]
    )


@dataclass
class Seed:
    platform: str
    topic: str
    body: bytes
    properties: dict | None
    doc: object = None  # the body as JSON, when it is


@dataclass
class Result:
    messages: int = 0
    batches: int = 0
    rows: int = 0
    fast_rows: int = 0
    error_rows: int = 0
    seconds: float = 0.0
    failures: dict = field(default_factory=dict)  # invariant -> (count, first example description)

    def fail(self, what: str, seed: Seed, body: bytes, properties, detail: str, out: Path | None) -> None:
        count, example = self.failures.get(what, (0, None))
        if example is None:
            example = f"{seed.platform} {seed.topic!r} body={body[:200]!r}… properties={properties!r}: {detail}"
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                name = f"{len(self.failures):03d}-{seed.platform}"
                (out / f"{name}.body").write_bytes(body)
                (out / f"{name}.txt").write_text(f"{what}\n{seed.topic}\n{properties!r}\n{detail}\n")
        self.failures[what] = (count + 1, example)


def sample_platform(name: str) -> str | None:
    for platform in ("tts", "tektelic", "akenza", "thingpark", "drogue"):
        if name.startswith(platform + "_"):
            return platform
    return None


def seeds(per_platform: int = 60) -> tuple[list[Seed], dict]:
    """The corpus, and {platform: parser} for each platform's simulator profile."""
    out: list[Seed] = []
    parsers: dict = {}
    topics: dict[str, list[tuple[str, dict | None]]] = {}
    for name in PLATFORMS:
        sim = make_simulator(name, FleetOptions(devices=6, gateways=3, seed=7, malformed_probability=0.05))
        platform = platforms.get(name)
        parsers[name] = platform.parser_for(platform.validate(sim.profile(URL)))
        for frame in sim.fleet.frames(per_platform):
            for message in sim.messages(frame):
                props = message.properties or None
                topics.setdefault(name, []).append((message.topic, props))
                out.append(Seed(name, message.topic, message.payload, props))
    seen = set()
    for directory in SAMPLE_DIRS:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            platform = sample_platform(path.name)
            if platform is None or not path.is_file():
                continue
            body = path.read_bytes()
            if body in seen:
                continue
            seen.add(body)
            for topic, props in topics.get(platform, [])[:6]:
                out.append(Seed(platform, topic, body, props))
    for seed in out:
        try:
            seed.doc = orjson.loads(seed.body)
        except orjson.JSONDecodeError:
            seed.doc = None
    return out, parsers


def dumps(doc) -> bytes:
    """JSON bytes of doc; the standard library's writer for what orjson refuses (integers beyond
    64 bits, lone surrogates, nesting past 254 levels): those are exactly the bodies worth sending."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return json.dumps(doc).encode()


def mutated(seed: Seed, rnd: random.Random) -> tuple[str, bytes, dict | None]:
    topic, properties = seed.topic, seed.properties
    r = rnd.random()
    if r < 0.45 and isinstance(seed.doc, dict | list):
        body = dumps(mutate_json(seed.doc, rnd))
    elif r < 0.85:
        body = mutate_bytes(seed.body, rnd)
    elif r < 0.9:
        body = nest(seed.body, rnd)
    elif r < 0.95:
        body = seed.body
        properties = hostile_properties(rnd)
    else:
        body = mutate_bytes(dumps(mutate_json(seed.doc, rnd)) if seed.doc is not None else seed.body, rnd)
    if rnd.random() < 0.03:  # odd topics too
        topic = rnd.choice(["", "/", "v3//devices//up", topic + "/x", topic.replace("/", "//"), "é/\u0000"])
    return topic, body, properties


def run(seconds: float, seed: int = 1, failures_dir: Path | None = None, progress=None, parsers=None) -> Result:
    """Fuzzes for `seconds`; `parsers` ({platform: object with parse_or_error}) replaces some of
    the platforms' own parsers (the slice test checks that a broken one is caught)."""
    corpus, own = seeds()
    parsers = {**own, **(parsers or {})}
    rnd = random.Random(seed)
    result = Result()
    store = EventStore(max_rows=20_000)
    start = time.monotonic()
    deadline = start + seconds
    next_id = 1
    while time.monotonic() < deadline:
        rows: list[tuple] = []
        for _ in range(BATCH_MESSAGES):
            item = rnd.choice(corpus)
            topic, body, properties = mutated(item, rnd)
            result.messages += 1
            ts = 1.7e9 + result.messages * 1e-3
            try:
                events = parsers[item.platform].parse_or_error(topic, body, properties)
            except Exception:  # noqa: BLE001 - what the fuzzing is for
                result.fail(
                    "parse_or_error raised", item, body, properties, traceback.format_exc(limit=-3), failures_dir
                )
                continue
            if type(events) is not list or not events:
                result.fail("parse_or_error gave no event", item, body, properties, repr(events), failures_dir)
                continue
            for event in events:
                if event.kind == "error" and event.error and BUG_MARK in event.error:
                    result.fail("a parser raised by mistake", item, body, properties, event.error, failures_dir)
                try:
                    rows.append(event_row(event, ts, next_id))
                except Exception:  # noqa: BLE001
                    result.fail(
                        "event_row raised", item, body, properties, traceback.format_exc(limit=-3), failures_dir
                    )
                    continue
                next_id += 1
            if item.platform == "tts" and properties is None:
                check_fast_path(result, item, topic, body, events, ts, failures_dir)
        append_batch(result, store, rows, failures_dir)
        if progress is not None:
            progress(result, time.monotonic() - start)
    result.seconds = time.monotonic() - start
    return result


def check_fast_path(result: Result, item: Seed, topic: str, body: bytes, events, ts: float, out) -> None:
    try:
        fast = uplink_row(topic, body, ts, 7)
    except Exception:  # noqa: BLE001
        result.fail("the fast path raised", item, body, None, traceback.format_exc(limit=-3), out)
        return
    if fast is None:
        return
    result.fast_rows += 1
    row, _received_at, _cids = fast
    full = event_row(events[0], ts, 7) if len(events) == 1 else None
    if full is None or full[KIND] != "uplink":
        result.fail("the fast path took what the full parser does not", item, body, None, repr(events[:2]), out)
        return
    for name, a, b in zip(ROW_FIELDS, row, full, strict=True):
        if name == "decoded" and a is not None and b is not None:
            if orjson.loads(a) != orjson.loads(b):
                result.fail("the fast path's decoded differs", item, body, None, f"{a[:80]!r} != {b[:80]!r}", out)
                return
        elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
            result.fail(f"the fast path's {name} differs", item, body, None, f"{a!r} != {b!r}", out)
            return
        elif type(a) is not type(b):
            result.fail(f"the fast path's {name} has another type", item, body, None, f"{a!r} vs {b!r}", out)
            return


def append_batch(result: Result, store: EventStore, rows: list[tuple], out) -> None:
    if not rows:
        return
    n = len(rows)
    dummy = Seed("store", "", b"", None)
    try:
        batch = columns_from_rows(rows)
    except Exception:  # noqa: BLE001
        result.fail("columns_from_rows raised", dummy, b"", None, traceback.format_exc(limit=-3), out)
        return
    if len(rows) != n:
        result.fail("columns_from_rows changed the number of rows", dummy, b"", None, f"{n} -> {len(rows)}", out)
    lengths = {name: len(batch[name]) for name in (*ROW_FIELDS, "device_key")}
    if set(lengths.values()) != {n}:
        bad = {k: v for k, v in lengths.items() if v != n}
        result.fail("columns of unequal length", dummy, b"", None, f"{n} rows, {bad}", out)
        return
    before = store.total_appended
    try:
        store.append_columns(batch)
    except Exception:  # noqa: BLE001
        result.fail("append_columns raised", dummy, b"", None, traceback.format_exc(limit=-3), out)
        return
    if store.total_appended - before != n:
        result.fail(
            "the store did not take every row", dummy, b"", None, f"{store.total_appended - before} of {n}", out
        )
    if len({len(col) for col in store.cols.values()}) != 1:
        result.fail("the store's columns differ in length", dummy, b"", None, "", out)
    result.batches += 1
    result.rows += n
    result.error_rows += sum(1 for kind in batch["kind"] if kind == "error")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/fuzz.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--failures", type=Path, default=None, help="folder for failing messages (default: a temp dir)")
    args = ap.parse_args(argv)
    out = args.failures or Path(tempfile.mkdtemp(prefix="uplink-fuzz-"))
    last = [0.0]

    def progress(result: Result, elapsed: float) -> None:
        if elapsed - last[0] >= 30:
            last[0] = elapsed
            print(
                f"{elapsed:6.0f} s: {result.messages:,} messages, {result.rows:,} rows "
                f"({result.error_rows:,} error rows, {result.fast_rows:,} by the fast path), "
                f"{len(result.failures)} failing invariants",
                flush=True,
            )

    print(f"fuzzing {', '.join(PLATFORMS)} + the TTS fast path + the store for {args.minutes:g} min (seed {args.seed})")
    result = run(args.minutes * 60, args.seed, out, progress)
    rate = result.messages / result.seconds if result.seconds else 0.0
    print(
        f"{result.messages:,} messages in {result.seconds:.0f} s ({rate:,.0f}/s): {result.rows:,} rows in "
        f"{result.batches:,} batches, {result.error_rows:,} error rows, {result.fast_rows:,} rows by the fast path"
    )
    for what, (count, example) in sorted(result.failures.items()):
        print(f"FAILED {what}: {count:,} times; first: {example}")
    if result.failures:
        print(f"failing messages written to {out}")
    print(f"fuzz_messages={result.messages} fuzz_rate={rate:.0f} failures={len(result.failures)}")
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
