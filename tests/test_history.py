"""The SQLite event history: appends survive restarts, the newest rows load into the EventStore,
searches agree with EventStore.matching, retention, versions, damaged files, a reader beside a
writer, and file names that are safe on every OS."""

from __future__ import annotations

import base64
import dataclasses
import random
import re
import sqlite3
import threading
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import history, platforms
from app.history import (
    HistoryCorrupt,
    HistoryError,
    HistoryReader,
    HistoryVersionError,
    HistoryWriter,
    RawRecord,
    Retention,
    history_path,
    profile_slug,
)
from app.store import ROW_FIELDS, EventStore, F, Filter, columns_from_rows, event_row

SAMPLES = Path(__file__).resolve().parent / "samples"
NO_LIMITS = Retention(max_age_days=None, max_rows=None, max_bytes=None)


# ----- rows --------------------------------------------------------------------------------------


def tts_messages(n: int, devices: int = 7, seed: int = 1) -> list[tuple[str, bytes]]:
    """Realistic TTS uplinks: the documented sample, per device and frame counter."""
    rnd = random.Random(seed)
    sample = orjson.loads((SAMPLES / "tts_up_1.json").read_bytes())
    out = []
    for i in range(n):
        d = i % devices
        doc = orjson.loads(orjson.dumps(sample))
        ids = doc["end_device_ids"]
        ids["device_id"] = f"sensor-{d}"
        ids["dev_eui"] = f"70B3D57ED0{d:06X}"
        up = doc["uplink_message"]
        up["f_cnt"] = i
        up["frm_payload"] = base64.b64encode(bytes(rnd.randrange(256) for _ in range(8))).decode()
        up["decoded_payload"] = {"temperature": rnd.randrange(-100, 400) / 10, "ok": bool(i % 2)}
        up["received_at"] = f"2024-05-01T12:00:{i % 60:02d}.5Z"
        up["rx_metadata"][0]["rssi"] = -rnd.randrange(40, 120)
        up["rx_metadata"][0]["gateway_ids"]["gateway_id"] = f"gw-{rnd.randrange(3)}"
        out.append((f"v3/app1@ttn/devices/sensor-{d}/up", orjson.dumps(doc)))
    return out


def tts_batch(writer: HistoryWriter, messages, ts0: float | None = None, props: dict | None = None):
    """Rows (ids from the writer) and raw records, as the engine process will build them."""
    parse = platforms.get("tts").parse
    events = [(topic, payload, ev) for topic, payload in messages for ev in parse(topic, payload)]
    ids = writer.take_ids(len(events))
    ts0 = time.time() if ts0 is None else ts0
    rows = [
        event_row(ev, ts0 + k * 0.001, row_id) for k, (row_id, (_, _, ev)) in enumerate(zip(ids, events, strict=True))
    ]
    raws = [
        RawRecord(topic, payload, props, ev.received_at, tuple(ev.correlation_ids)) for topic, payload, ev in events
    ]
    return rows, raws


def fill(writer: HistoryWriter, n: int, batch: int = 100, **kw) -> tuple[list[tuple], list[RawRecord]]:
    all_rows, all_raws = [], []
    messages = tts_messages(n)
    for i in range(0, n, batch):
        rows, raws = tts_batch(writer, messages[i : i + batch], **kw)
        writer.append(rows, raws)
        all_rows += rows
        all_raws += raws
    return all_rows, all_raws


def with_id(row: tuple, row_id: int) -> tuple:
    return (row_id, *row[1:])


# ----- append, reopen, read back ---------------------------------------------------------------


def test_history_survives_a_restart_and_ids_continue(tmp_path):
    path = tmp_path / "h.sqlite3"
    with HistoryWriter(path, NO_LIMITS) as w:
        assert w.next_id == 1
        rows1, _ = fill(w, 120, batch=50)
        assert w.count == 120 and w.next_id == 121
    with HistoryWriter(path, NO_LIMITS) as w:
        assert w.next_id == 121 and w.count == 120
        rows2, _ = fill(w, 30)
        assert [r[0] for r in rows2] == list(range(121, 151))
    with HistoryReader(path) as r:
        assert r.count() == 150
        for row in (*rows1[:3], rows1[77], rows2[-1]):
            assert r.row(row[0]) == dict(zip(ROW_FIELDS, row, strict=True))
        assert r.row(10_000) is None


def test_load_recent_returns_the_newest_rows_in_order_ready_for_the_store(tmp_path):
    path = tmp_path / "h.sqlite3"
    w = HistoryWriter(path, NO_LIMITS)
    rows, _ = fill(w, 250, batch=40)
    r = HistoryReader(path)
    batches = list(r.load_recent(100, chunk=30))
    assert [len(b["id"]) for b in batches] == [30, 30, 30, 10]
    assert [i for b in batches for i in b["id"]] == list(range(151, 251))
    for k, batch in enumerate(batches):
        assert batch == columns_from_rows(rows[150 + 30 * k : 150 + 30 * (k + 1)])
    # Loaded through append_columns, the store holds what it holds when fed the rows live.
    loaded, live = EventStore(), EventStore()
    for batch in batches:
        loaded.append_columns(batch)
    live.append_rows(rows[150:])
    assert [loaded.row(p) for p in range(100)] == [live.row(p) for p in range(100)]
    assert loaded.devices() == live.devices()
    assert [i for b in r.load_recent(10_000) for i in b["id"]] == list(range(1, 251))
    assert list(r.load_recent(0)) == []
    # Ids with gaps (reserved, never written): still exactly the newest N.
    w.take_ids(5)
    more, _ = fill(w, 20)
    assert [i for b in r.load_recent(30) for i in b["id"]] == [*range(241, 251), *(m[0] for m in more)]
    w.close()
    r.close()


def test_the_dup_flag_is_kept_and_a_file_from_before_it_gains_the_column(tmp_path):
    path = tmp_path / "h.sqlite3"
    with HistoryWriter(path, NO_LIMITS) as w:
        rows, _ = fill(w, 50)
    # A file as consoles before the flag wrote it: no dup column, no index.
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE events DROP COLUMN dup")
    db.commit()
    db.close()
    with HistoryReader(path) as r:
        assert [list(b.get("dup", [])) for b in r.load_newest_first(50, first=20, chunk=20)] == [[], [], []]
        with HistoryWriter(path, NO_LIMITS) as w:  # opening it for writing adds the column
            more = [with_id(row, i) for row, i in zip(rows[:30], w.take_ids(30), strict=True)]
            w.append(more, dup_ids=[more[3][0], more[29][0]])
        flagged = [
            i
            for b in r.load_recent(80, chunk=25)
            for i, d in zip(b["id"], b.get("dup", [0] * len(b["id"])), strict=True)
            if d
        ]
        assert flagged == [more[3][0], more[29][0]]
        first = next(r.load_newest_first(80, first=10))
        assert list(first["dup"]) == [0] * 9 + [1], "the newest batch carries the flag of its last row"
        store = EventStore()
        store.append_columns(first)
        assert store.is_dup(store.end - 1) and not store.is_dup(store.base)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM events WHERE dup = 1").fetchone()[0] == 2
    db.close()


def test_raw_and_row_by_id(tmp_path):
    path = tmp_path / "h.sqlite3"
    props = {
        "content_type": "application/json",
        "user_properties": [["tenant", "acme"], ["k", "ü"]],
        "correlation_data": b"\x00\x01\xff",
        "message_expiry_interval": 60,
        "subscription_identifier": [3],
    }
    w = HistoryWriter(path, NO_LIMITS)
    rows, raws = tts_batch(w, tts_messages(3), props=props)
    # The raw topic may differ from the row's (it is stored only then).
    raws[1] = dataclasses.replace(raws[1], topic="v3/other/topic")
    w.append(rows, raws)
    plain = [with_id(rows[0], i) for i in w.take_ids(2)]
    w.append(plain)  # no raw records
    tuples = [with_id(rows[2], i) for i in w.take_ids(1)]
    w.append(tuples, [("t/x", b"{}", None, None, ())])  # raw records as plain tuples
    r = HistoryReader(path)
    for row, raw in zip(rows, raws, strict=True):
        assert r.raw(row[0]) == raw
        assert r.row(row[0]) == dict(zip(ROW_FIELDS, row, strict=True))
    assert r.raw(2).topic == "v3/other/topic" and r.row(2)["topic"] == rows[1][F["topic"]]
    assert r.raw(1).properties["correlation_data"] == b"\x00\x01\xff"
    assert r.raw(1).correlation_ids[0].startswith("gs:conn:")
    assert r.raw(4) is None and r.row(4)["id"] == 4
    assert r.raw(6) == RawRecord("t/x", b"{}", None, None, ())
    assert r.raw(99) is None and r.row(99) is None
    w.close()
    r.close()


def test_appending_ids_that_are_already_stored_is_refused_with_a_sentence(tmp_path):
    path = tmp_path / "h.sqlite3"
    w = HistoryWriter(path, NO_LIMITS)
    rows, raws = fill(w, 10)
    w.next_id = 5  # as a second writer on the same file would
    with pytest.raises(HistoryError, match="already in"):
        w.append([with_id(rows[0], 5)], raws[:1])
    assert w.next_id == 11 and w.count == 10
    with pytest.raises(ValueError):
        w.append(rows[:2], raws[:1])
    w.close()
    with pytest.raises(HistoryError, match="closed"):
        w.append(rows[:1], raws[:1])


# ----- search ----------------------------------------------------------------------------------

DEVICE_IDS = ["dev-1", "Dev-2", "Gerät-K", "KELVIN-\u212a", "İstanbul", "a_b%c\\d", "", None]
EUIS = ["0004A30B00000001", "0004a30b000000AB", "", None, None]
KINDS = ["uplink", "join", "downlink_ack", "error"]
GATEWAYS = ["gw-a", "GW-B", "gw-ä", None]
ERRORS = [None, None, "Boom", "naïve ERROR", "nul\x00after"]
TOPICS = ["v3/app/devices/d1/up", "Topic/%/_", "ÜBER/k", None]


def search_row(i: int, rnd: random.Random) -> tuple:
    payload = rnd.choice([None, b"", bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 6))), b"\xab\xcd\x12"])
    decoded = rnd.choice([None, {"Temp": i % 7, "note": "Ärger"}, {"k": "Kelvin \u212a"}, {"x": "ab cd"}, "TEMP"])
    values = {
        "id": i + 1,
        "ts": 1_700_000_000 + i * 0.5,
        "platform": "tts",
        "kind": rnd.choice(KINDS),
        "application_id": "app",
        "device_id": rnd.choice(DEVICE_IDS),
        "dev_eui": rnd.choice(EUIS),
        "dev_addr": "260B0001",
        "f_port": rnd.choice([1, 2, None]),
        "f_cnt": i,
        "payload": payload,
        "decoded": None if decoded is None else orjson.dumps(decoded),
        "rssi": rnd.choice([-80.5, None]),
        "snr": rnd.choice([7.25, None]),
        "gateway_id": rnd.choice(GATEWAYS),
        "gateways": rnd.choice([1, 2, None]),
        "spreading_factor": 7,
        "bandwidth_hz": 125000,
        "frequency_hz": 868100000,
        "error": rnd.choice(ERRORS),
        "topic": rnd.choice(TOPICS),
    }
    return tuple(values[name] for name in ROW_FIELDS)


@pytest.fixture(scope="module")
def searchable(tmp_path_factory):
    rnd = random.Random(7)
    rows = [search_row(i, rnd) for i in range(400)]
    path = tmp_path_factory.mktemp("search") / "h.sqlite3"
    with HistoryWriter(path, NO_LIMITS) as w:
        for i in range(0, len(rows), 64):
            assert list(w.take_ids(len(rows[i : i + 64]))) == [r[0] for r in rows[i : i + 64]]
            w.append(rows[i : i + 64])
    store = EventStore()
    store.append_rows(rows)
    reader = HistoryReader(path)
    yield rows, store, reader
    reader.close()


def expected_ids(store: EventStore, rows: list[tuple], flt: Filter) -> list[int]:
    """Ids of the rows EventStore.matching keeps, newest first.

    With a device, matching tests rows one by one, and that path finds a hex needle anywhere in the
    payload's hex (even across byte boundaries); the column-wide path (used without a device, and
    by the history for both) looks for the bytes. The reference takes the column-wide rule."""
    if flt.device is None:
        positions = store.matching(flt)
    else:
        key = flt.device
        positions = [
            p
            for p in store.matching(dataclasses.replace(flt, device=None))
            if (rows[p][F["dev_eui"]] or rows[p][F["device_id"]]) == key
        ]
    return [rows[p][0] for p in reversed(positions)]


TEXTS = st.one_of(
    st.sampled_from(["", "dev", "DEV-2", "k", "K", "\u212a", "i", "İ", "ä", "Ä", "%", "_", "\\", "ab", "AB CD"]),
    st.sampled_from(["temp", 'TEMP":3', "ärger", "nul", "after", "12", "abcd12", "a b", "\x00", "gw-"]),
    st.text(alphabet='aAbBdDkKiİıéÉäÄ\u212a012 _%\\-":gGeEvV\x00', min_size=1, max_size=4),
)
FILTERS = st.builds(
    Filter,
    device=st.sampled_from([None, "dev-1", "Dev-2", "Gerät-K", "0004A30B00000001", "0004a30b000000AB", "", "nobody"]),
    kinds=st.frozensets(st.sampled_from(KINDS), max_size=2),
    f_port=st.sampled_from([None, 1, 2]),
    gateway=st.sampled_from([None, "", "gw-a", "GW-B", "gw-ä"]),
    text=TEXTS,
)


@settings(max_examples=300, deadline=None)
@given(flt=FILTERS, limit=st.sampled_from([1, 7, 10_000]), before=st.sampled_from([None, 1, 150, 401, 1000]))
def test_search_agrees_with_the_event_store(searchable, flt, limit, before):
    rows, store, reader = searchable
    want = expected_ids(store, rows, flt)
    if before is not None:
        want = [i for i in want if i < before]
    got = reader.search(flt, limit=limit, before_id=before)
    assert [r[0] for r in got] == want[:limit]
    assert all(r == rows[r[0] - 1] for r in got)


def test_search_without_device_is_exactly_event_store_matching(searchable):
    rows, store, reader = searchable
    for text in ("ab", "abcd", "dev-1", "ÄRGER", "\u212a", "k", "i", "%", "_", "nul\x00a", "12 ab", "ü"):
        flt = Filter(text=text)
        assert [r[0] for r in reader.search(flt)] == [rows[p][0] for p in reversed(store.matching(flt))]


def test_device_search_uses_the_device_index(searchable):
    _, _, reader = searchable
    plan = " ".join(
        str(row[-1])
        for row in reader._db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM events WHERE device_key = ? AND id < ? ORDER BY id DESC", ("x", 5)
        )
    )
    assert "events_device" in plan and "TEMP B-TREE" not in plan


def test_search_pages_with_before_id(searchable):
    rows, store, reader = searchable
    flt = Filter(kinds=frozenset({"uplink"}))
    pages, before = [], None
    while page := reader.search(flt, limit=25, before_id=before):
        pages.append([r[0] for r in page])
        before = page[-1][0]
    assert [i for p in pages for i in p] == expected_ids(store, rows, flt)
    assert all(len(p) == 25 for p in pages[:-1])


# ----- retention -------------------------------------------------------------------------------


def used_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        page_count, free, size = (
            db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
        return (page_count - free) * size
    finally:
        db.close()


def test_retention_by_age_deletes_rows_older_than_the_limit(tmp_path):
    path = tmp_path / "h.sqlite3"
    w = HistoryWriter(path, NO_LIMITS)
    now = time.time()
    old, _ = fill(w, 60, batch=20, ts0=now - 40 * 86400)
    mid, _ = fill(w, 40, batch=20, ts0=now - 29 * 86400)
    w.append(*tts_batch(w, tts_messages(5), ts0=now))
    w.retention = Retention(max_age_days=30, max_rows=None, max_bytes=None)
    assert w.enforce_retention() == 60
    assert w.enforce_retention() == 0
    r = HistoryReader(path)
    assert r.count() == w.count == 45
    assert r.row(old[-1][0]) is None and r.row(mid[0][0]) is not None
    assert [i for b in r.load_recent(1000) for i in b["id"]][0] == mid[0][0]
    # append() checks the age by itself, every retention_interval seconds.
    w.retention = Retention(max_age_days=28, max_rows=None, max_bytes=None)
    w.retention_interval = 0
    w.append(*tts_batch(w, tts_messages(1), ts0=now))
    assert w.count == 6 and r.count() == 6
    w.close()
    r.close()


def test_retention_by_rows_keeps_the_newest(tmp_path):
    path = tmp_path / "h.sqlite3"
    w = HistoryWriter(path, NO_LIMITS)
    rows, _ = fill(w, 300, batch=50)
    w.retention = Retention(max_age_days=None, max_rows=120, max_bytes=None)
    assert w.enforce_retention() == 180
    with HistoryReader(path) as r:
        assert r.count() == 120
        assert [i for b in r.load_recent(1000) for i in b["id"]] == [row[0] for row in rows[180:]]
    # Automatic passes keep the count at or under the limit (a little under: they run rarely).
    for _ in range(5):
        fill(w, 50, batch=50)
        assert 118 <= w.count <= 120
    w.close()
    with HistoryWriter(path, NO_LIMITS) as again:
        assert 118 <= again.count <= 120


def test_retention_by_bytes_keeps_the_used_size_under_the_limit(tmp_path):
    path = tmp_path / "h.sqlite3"
    w = HistoryWriter(path, NO_LIMITS)
    rows, _ = fill(w, 1500, batch=250)
    before = used_bytes(path)
    limit = before // 3
    w.retention = Retention(max_age_days=None, max_rows=None, max_bytes=limit)
    deleted = w.enforce_retention()
    assert 0 < deleted < 1500 and w.count == 1500 - deleted
    w.close()
    assert used_bytes(path) <= limit
    with HistoryReader(path) as r:
        assert r.count() == 1500 - deleted
        assert [i for b in r.load_recent(5000) for i in b["id"]] == [row[0] for row in rows[deleted:]]
    # Automatic passes (after every append) keep it under the limit too.
    w = HistoryWriter(path, Retention(max_age_days=None, max_rows=None, max_bytes=limit))
    for _ in range(4):
        fill(w, 250, batch=250)
        assert used_bytes(path) <= limit * 1.02
    w.close()


def test_automatic_retention_works_in_bounded_chunks(tmp_path):
    path = tmp_path / "h.sqlite3"
    w = HistoryWriter(path, NO_LIMITS)
    fill(w, 400, batch=100)
    w.retention = Retention(max_age_days=None, max_rows=100, max_bytes=None)
    w.retention_chunk = 50
    counts = []
    for _ in range(8):
        fill(w, 1)
        counts.append(w.count)
    assert counts[0] == 401 - 50 and counts[-1] <= 100
    w.close()


# ----- versions, damage, files -----------------------------------------------------------------


def test_a_newer_format_is_refused_with_a_sentence_and_left_alone(tmp_path):
    path = tmp_path / "h.sqlite3"
    with HistoryWriter(path, NO_LIMITS) as w:
        fill(w, 5)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    db.close()
    for opener in (HistoryWriter, HistoryReader, HistoryWriter.open_or_recover):
        with pytest.raises(HistoryVersionError, match=r"newer Uplink Console .*update"):
            opener(path)
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []


@pytest.mark.parametrize("damage", ["garbage", "foreign", "truncated"])
def test_a_damaged_file_is_moved_aside_and_a_fresh_history_started(tmp_path, damage):
    path = tmp_path / "h.sqlite3"
    if damage == "garbage":
        path.write_bytes(b"this is not a database\n" * 500)
    elif damage == "foreign":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE notes (x)")
        db.commit()
        db.close()
    else:
        with HistoryWriter(path, NO_LIMITS) as w:
            fill(w, 200)
        data = path.read_bytes()
        path.write_bytes(data[:100] + b"\xff" * 4000 + data[4100 : len(data) // 2])
    original = path.read_bytes()
    with pytest.raises(HistoryCorrupt) as info:
        w = HistoryWriter(path, NO_LIMITS)
        w.close()
        with HistoryReader(path) as r:  # damage deeper in the file shows when it is read
            list(r.load_recent(1000))
            r.raw(150)
    assert str(path) in str(info.value) and str(info.value).endswith(".")
    w = HistoryWriter.open_or_recover(path, NO_LIMITS)
    assert w.recovered_from is not None and re.search(r"\.corrupt-\d{8}-\d{6}", w.recovered_from.name)
    assert w.recovered_from.read_bytes() == original
    assert w.next_id == 1 and w.count == 0
    fill(w, 3)
    w.close()
    with HistoryReader(path) as r:
        assert r.count() == 3


def test_damage_deep_in_a_file_shows_as_history_corrupt_and_the_writer_starts_over(tmp_path):
    path = tmp_path / "h.sqlite3"
    with HistoryWriter(path, NO_LIMITS) as w:
        fill(w, 600, batch=200)
    data = bytearray(path.read_bytes())
    page = history.PAGE_SIZE
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = b"\x5a" * page
    path.write_bytes(bytes(data))
    w = HistoryWriter(path, NO_LIMITS)  # the first pages are fine: it opens
    with HistoryReader(path) as r, pytest.raises(HistoryCorrupt, match="damaged"):
        list(r.load_recent(1000))
    moved = w.recover()
    assert moved.exists() and w.recovered_from == moved and w.count == 0
    assert w.next_id == 601  # ids the GUI holds keep naming the same rows (now gone), never others
    fill(w, 2)
    w.close()
    with HistoryReader(path) as r:
        assert [i for b in r.load_recent(10) for i in b["id"]] == [601, 602]


def test_a_reader_before_the_writer_sees_an_empty_history_then_the_rows(tmp_path):
    path = tmp_path / "later.sqlite3"
    r = HistoryReader(path)
    assert r.count() == 0 and r.search(Filter()) == [] and list(r.load_recent(10)) == [] and r.raw(1) is None
    w = HistoryWriter(path, NO_LIMITS)
    assert r.count() == 0
    fill(w, 4)
    assert r.count() == 4 and len(r.search(Filter())) == 4
    w.close()
    r.close()


def test_reader_reads_while_a_writer_appends(tmp_path):
    path = tmp_path / "h.sqlite3"
    w = HistoryWriter(path, Retention(max_age_days=None, max_rows=1500, max_bytes=None))
    messages = tts_messages(100)
    batches = [tts_batch(w, messages) for _ in range(40)]
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for rows, raws in batches:
                w.append(rows, raws)
                time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            done.set()

    r = HistoryReader(path)
    thread = threading.Thread(target=write)
    thread.start()
    seen = []
    while not done.is_set() or len(seen) < 3:
        n = r.count()
        ids = [i for b in r.load_recent(300, chunk=100) for i in b["id"]]
        assert ids == sorted(ids) and len(ids) <= 300
        if ids:
            assert r.raw(ids[-1]) is not None
            found = [row[0] for row in r.search(Filter(device="70B3D57ED0000003"), limit=5)]
            assert found == sorted(found, reverse=True) and len(found) == 5
        seen.append(n)
    thread.join()
    assert not errors
    assert any(0 < n < w.count for n in seen)  # it did read in the middle of the writing
    assert r.count() == w.count <= 1500
    assert r.row(batches[-1][0][-1][0]) is not None
    w.close()
    r.close()


@pytest.mark.parametrize(
    "name",
    [
        "Prod",
        "prod",
        "CON",
        "con",
        "nul.txt",
        "LPT1",
        'a/b\\c:d*e?f"g<h>i|j',
        " trailing. ",
        "...",
        "",
        "Büro Köln",
        "名前",
        "x" * 300,
        "com1 ",
        "aux\x00",
    ],
)
def test_profile_file_names_are_safe_everywhere(name, tmp_path, monkeypatch):
    monkeypatch.setenv(history.DATA_DIR_ENV, str(tmp_path / "data"))
    path = history_path(name)
    assert path.parent == tmp_path / "data" / "history" and path.parent.is_dir()
    stem = path.name.removesuffix(".sqlite3")
    assert re.fullmatch(r"[a-z0-9_-]{1,60}", stem), stem
    assert stem.split(".")[0].rstrip(" ").lower() not in {"con", "prn", "aux", "nul", "com1", "lpt1"}
    assert profile_slug(name) == stem  # stable
    path.touch()  # a real file name on this OS


def test_profile_slugs_never_collide_and_read_like_the_name():
    names = ["Prod", "prod", "PROD", "pröd", "prod ", "a/b", "a_b", "a-b", "a b", "", " "]
    slugs = [profile_slug(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert profile_slug("Büro Köln").startswith("buro-koln-")


def test_data_dir_defaults_to_the_platform_user_data_dir(monkeypatch):
    monkeypatch.delenv(history.DATA_DIR_ENV, raising=False)
    assert history.data_dir().name == "uplink-console"
    monkeypatch.setenv(history.DATA_DIR_ENV, "/somewhere/else")
    assert history.data_dir() == Path("/somewhere/else")


def test_exports_take_receive_times_and_correlation_ids_from_the_history(tmp_path):
    from app.export import RangeExtras, export_rows

    with HistoryWriter(tmp_path / "h.sqlite3") as w:
        rows, raws = fill(w, 300)
    reader = HistoryReader(tmp_path / "h.sqlite3")
    got = reader.extras(1, 10_000)
    assert set(got) == {r[0] for r in rows}
    assert got[rows[5][0]] == (raws[5].received_at, tuple(raws[5].correlation_ids))
    store = EventStore()
    store.append_columns(columns_from_rows(rows))
    calls = []

    def fetch(lo, hi):
        calls.append((lo, hi))
        return reader.extras(lo, hi)

    out = tmp_path / "out.jsonl"
    export_rows(store, store.matching(Filter()), out, "jsonl", extra=RangeExtras(fetch, span=100))
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [o["received_at"] for o in lines] == [r.received_at for r in raws]
    assert [o["correlation_ids"] for o in lines] == [list(r.correlation_ids) for r in raws]
    assert len(calls) == 3  # a range at a time, not a query per row
    reader.close()


def test_an_export_without_a_readable_history_still_writes_every_row(tmp_path):
    from app.export import RangeExtras, export_rows

    with HistoryWriter(tmp_path / "h.sqlite3") as w:
        rows, _ = fill(w, 50)
    store = EventStore()
    store.append_columns(columns_from_rows(rows))

    def broken(lo, hi):
        raise HistoryError("The history file is locked.")

    extra = RangeExtras(broken)
    out = tmp_path / "out.jsonl"
    assert export_rows(store, store.matching(Filter()), out, "jsonl", extra=extra) == 50
    assert isinstance(extra.failed, HistoryError)
