"""Search that answers while you type: the index agrees with the per-row scan on random stores
(plain text in any case, regular expressions), answers newest first, keeps up with rows arriving
and trimmed, and the table drives it in slices: a new keystroke drops the search in flight and
the GUI loop keeps beating while a search runs."""

from __future__ import annotations

import random
import string
import time

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.search import PIECE_ROWS, Query, QueryError, SearchIndex, reference_positions, row_text
from app.store import ROW_FIELDS, EventStore, Filter, columns_from_rows

WORDS = ["Temperature", "humidity", "BATTERY", "grüße", "ÉTÉ", "leak", "door", "a", "ß", "İstanbul", "x\ny"]


def random_row(rnd: random.Random, i: int) -> tuple:
    values = dict.fromkeys(ROW_FIELDS)
    device = rnd.randrange(12)
    decoded = None
    if rnd.random() < 0.8:
        doc = {rnd.choice(WORDS): rnd.choice([rnd.randrange(-50, 3000), rnd.random() * 100, rnd.choice(WORDS)])}
        if rnd.random() < 0.5:
            doc["n"] = rnd.randrange(100_000)
        decoded = orjson.dumps(doc)
    values.update(
        id=i,
        ts=1_700_000_000.0 + i,
        platform="tts",
        kind=rnd.choice(["uplink", "uplink", "join", "error"]),
        application_id="app",
        device_id=rnd.choice([f"Env-Sensor-{device:03d}", f"dör-{device}", None]),
        dev_eui=rnd.choice([f"70B3D57ED00500{device:02X}", None]),
        f_port=rnd.choice([1, 2, None]),
        f_cnt=rnd.randrange(1000),
        payload=rnd.randbytes(rnd.randrange(0, 12)) or None,
        decoded=decoded,
        gateway_id=rnd.choice(["eui-b827ebfffea00111", "GW-Roof", None]),
        error=rnd.choice([None, None, None, "The message is not valid JSON (byte 12).", "Kaputt: ÄÖÜ"]),
        topic=f"v3/app@ttn/devices/dev-{device}/{rnd.choice(['up', 'join'])}",
    )
    return tuple(values[name] for name in ROW_FIELDS)


def fill(store: EventStore, index: SearchIndex, rows: list[tuple], rnd: random.Random) -> None:
    """Appends rows in random batch sizes, indexing in random slice sizes between appends."""
    i = 0
    while i < len(rows):
        k = rnd.randrange(1, 400)
        store.append_columns(columns_from_rows(rows[i : i + k]))
        i += k
        if rnd.random() < 0.7:
            index.catch_up(rnd.randrange(1, 700))
    while index.catch_up(rnd.randrange(1, 5000)):
        pass


def needles(rnd: random.Random, store: EventStore, n: int) -> list[str]:
    """Texts a user might type: pieces of what rows hold (in another case), and things nowhere."""
    out = ["", "zzzz-nothing", "7", "ä", "\n"]
    for _ in range(n):
        pos = rnd.randrange(store.base, store.end)
        row = store.row(pos)
        source = rnd.choice(
            [
                row["device_id"] or "",
                row["dev_eui"] or "",
                row["topic"] or "",
                row["gateway_id"] or "",
                row["error"] or "",
                (row["decoded"] or b"").decode(),
                (row["payload"] or b"").hex(),
            ]
        )
        if not source:
            continue
        a = rnd.randrange(len(source))
        b = min(len(source), a + rnd.randrange(1, 9))
        piece = source[a:b]
        out.append(piece.upper() if rnd.random() < 0.3 else piece)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 2500), max_rows=st.sampled_from([500, 1200, 100_000]))
def test_index_equals_the_per_row_scan(seed, n, max_rows):
    rnd = random.Random(seed)
    store = EventStore(max_rows=max_rows, trim_chunk=max(1, max_rows // 10))
    index = SearchIndex(store)
    fill(store, index, [random_row(rnd, i) for i in range(n)], rnd)
    assert index.end == store.end
    for text in needles(rnd, store, 12):
        query = Query(text)
        found = index.search(query).run(store.base).tolist()
        assert found == reference_positions(store, query), text


@pytest.mark.parametrize(
    "pattern",
    [
        r"env-sensor-00[1-3]",
        r"^70b3",
        r"^[0-9a-f]{4}$",
        r"hum.dity",
        r"\d{4}",
        r"ÄÖ|leak",
        r"json \(byte",
        r"^$",
        r"e\sn",
    ],
)
def test_regex_equals_the_per_row_scan(pattern):
    rnd = random.Random(pattern)
    store = EventStore()
    index = SearchIndex(store)
    fill(store, index, [random_row(rnd, i) for i in range(3000)], rnd)
    query = Query(pattern, regex=True)
    found = index.search(query).run().tolist()
    assert found == reference_positions(store, query)
    assert found or pattern == r"e\sn"  # the patterns are chosen to find something (but this one)


def test_an_invalid_regex_is_one_sentence():
    with pytest.raises(QueryError) as info:
        Query("temp(", regex=True)
    text = str(info.value)
    assert text.startswith("The regular expression is not valid") and text.endswith(".") and "\n" not in text


def test_the_search_is_case_insensitive_over_every_field():
    store = EventStore()
    rows = [random_row(random.Random(1), i) for i in range(5)]
    values = dict(zip(ROW_FIELDS, rows[0], strict=True))
    values.update(
        device_id="Cellar-Door",
        dev_eui="0004A30B001C0530",
        topic="v3/App/Devices/Cellar-Door/up",
        gateway_id="Roof-GW",
        payload=bytes.fromhex("08e9ab"),
        decoded=b'{"Temperature":21.5}',
        error="Frame Counter Reset",
    )
    rows[2] = tuple(values[name] for name in ROW_FIELDS)
    store.append_columns(columns_from_rows(rows))
    index = SearchIndex(store)
    index.catch_up()
    for text in ["cellar-door", "001C05", "APP/dev", "roof", "8E9A", 'temperature":21', "COUNTER"]:
        assert 2 in index.search(Query(text)).run().tolist(), text
    assert row_text(b'{"A":1}', b"\x0a", "E") == b'{"a":1}\n0a\ne\n'


def test_newest_first_and_older_pieces_after():
    rnd = random.Random(5)
    store = EventStore(max_rows=10 * PIECE_ROWS)
    index = SearchIndex(store)
    rows = [random_row(rnd, i) for i in range(3 * PIECE_ROWS + 100)]
    for i in range(0, len(rows), 5000):
        store.append_columns(columns_from_rows(rows[i : i + 5000]))
    while index.catch_up(5000):
        pass
    assert len(index.pieces) == 4  # merged up to PIECE_ROWS rows each
    job = index.search(Query("e"))
    newest_first = []
    while not job.done:
        found = job.step()
        if len(found):
            assert not newest_first or found[-1] < newest_first[-1][0]
            newest_first.append(found)
    assert newest_first[0][-1] >= 3 * PIECE_ROWS  # the first answer holds the newest rows
    assert np.concatenate(newest_first[::-1]).tolist() == reference_positions(store, Query("e"))


def test_the_index_follows_trimming_and_clearing():
    rnd = random.Random(9)
    store = EventStore(max_rows=1000, trim_chunk=100)
    index = SearchIndex(store)
    for k in range(30):
        store.append_columns(columns_from_rows([random_row(rnd, k * 100 + i) for i in range(100)]))
        index.catch_up(rnd.randrange(50, 300))
    while index.catch_up():
        pass
    assert index.pieces[0].end > store.base
    query = Query("env")
    assert index.search(query).run(store.base).tolist() == reference_positions(store, query)
    store.clear()
    index.catch_up()
    assert index.pieces == [] and index.end == store.end
    store.append_columns(columns_from_rows([random_row(rnd, 9999)]))
    index.catch_up()
    assert index.search(Query("")).run().tolist() == [store.base]


# ----- the table drives it -------------------------------------------------------------------


def big_batches(n: int, seed: int = 3) -> list[dict]:
    rnd = random.Random(seed)
    rows = [random_row(rnd, i) for i in range(4000)]
    cols = columns_from_rows(rows)
    return [cols] * (n // 4000)


def wait_search(qtbot, model, timeout=30_000) -> None:
    qtbot.waitUntil(lambda: not model.searching, timeout=timeout)


def reference_for(model, flt: Filter, regex: bool = False) -> list[int]:
    query = Query(flt.text, regex)
    keep = model.store._row_test(Filter(kinds=flt.kinds, f_port=flt.f_port, gateway=flt.gateway))
    out = []
    for pos in reference_positions(model.store, query):
        if keep(pos - model.store.zero):
            out.append(pos)
    return out


def test_table_search_cancelled_by_the_next_keystroke_and_rows_arriving(qtbot, monkeypatch):
    from ui.workspace import uplink_table
    from ui.workspace.uplink_table import UplinkTableModel

    # No slice at once: on a fast machine 200,000 rows are searched within the first slice, and
    # the keystroke below must find a search in flight.
    monkeypatch.setattr(uplink_table, "FIRST_SLICE", 0.0)

    model = UplinkTableModel(EventStore(max_rows=400_000))
    model.ingest(big_batches(200_000))
    model.announce()
    while model.search_index.behind:
        model.search_index.catch_up()
    model.set_filter(Filter(text="hum"))
    assert model.searching
    qtbot.wait(1)
    model.set_filter(Filter(text="humidity", kinds=frozenset({"uplink"})))  # the next keystroke
    # Rows arriving while the search runs are matched as they are announced.
    rnd = random.Random(11)
    model.ingest([columns_from_rows([random_row(rnd, 10**6 + i) for i in range(500)])])
    model.announce()
    wait_search(qtbot, model)
    shown = [model.position(r) for r in range(model.rowCount())]
    assert shown == reference_for(model, model.filter)
    assert shown == sorted(shown) and len(shown) > 1000
    model.ingest([columns_from_rows([random_row(rnd, 2 * 10**6 + i) for i in range(500)])])
    model.announce()
    shown = [model.position(r) for r in range(model.rowCount())]
    assert shown == reference_for(model, model.filter)


def test_table_regex_and_an_emptied_box(qtbot):
    from ui.workspace.uplink_table import UplinkTableModel

    model = UplinkTableModel(EventStore())
    model.ingest(big_batches(20_000))
    model.announce()
    model.set_filter(Filter(text=r"^env-sensor-00[0-4]$"), regex=True)
    wait_search(qtbot, model)
    assert [model.position(r) for r in range(model.rowCount())] == reference_for(model, model.filter, regex=True)
    assert model.rowCount() > 0
    model.set_filter(Filter())
    assert model.visible is None and model.rowCount() == len(model.store)


def test_the_filter_bar_searches_without_freezing_the_window(qtbot):
    from ui.application import Heartbeat
    from ui.workspace.platform_workspace import PlatformWorkspace

    ws = PlatformWorkspace(max_rows=600_000)
    qtbot.addWidget(ws)
    ws.resize(1300, 800)
    ws.show()
    ws.ingest(big_batches(400_000))
    ws.model.announce()
    while ws.model.search_index.behind:
        ws.model.search_index.catch_up()
    qtbot.wait(300)  # the device statistics of those rows run first, in a turn of their own
    heartbeat = Heartbeat()
    t0 = time.monotonic()
    for ch in "humidity":  # typed a character at a time, each cancelling the one before
        ws.filter_bar.text.setText(ws.filter_bar.text.text() + ch)
        ws.filter_bar._debounce.stop()
        ws.filter_bar.apply()
        qtbot.wait(15)
    wait_search(qtbot, ws.model)
    took = time.monotonic() - t0
    heartbeat.timer.stop()
    assert ws.model.rowCount() == len(reference_for(ws.model, ws.model.filter))
    assert ws.filter_bar.result.text().endswith(" ms")
    # Loose bounds (a loaded CI machine): the loop kept turning, the whole typing took seconds at most.
    assert max(heartbeat.lateness_ms) < 400, sorted(heartbeat.lateness_ms)[-5:]
    assert took < 20


def test_the_filter_bar_says_when_the_regex_is_invalid(qtbot):
    from ui.workspace.platform_workspace import PlatformWorkspace

    ws = PlatformWorkspace()
    qtbot.addWidget(ws)
    ws.ingest(big_batches(4000))
    ws.model.announce()
    notices = []
    ws.notice.connect(lambda key, text: notices.append((key, text)))
    ws.filter_bar.regex.setChecked(True)
    ws.filter_bar.text.setText("temp(")
    ws.filter_bar.apply()
    assert ws.filter_bar.result.text() == "invalid expression"
    assert notices[-1][0] == "search" and notices[-1][1].startswith("The regular expression is not valid")
    ws.filter_bar.text.setText("temp")
    ws.filter_bar.apply()
    assert notices[-1] == ("search", None)


def test_random_text_never_breaks_the_search():
    store = EventStore()
    rnd = random.Random(2)
    store.append_columns(columns_from_rows([random_row(rnd, i) for i in range(2000)]))
    index = SearchIndex(store)
    index.catch_up()
    alphabet = string.printable + "äöüßÉİ\u0000\ud800"
    for _ in range(200):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 6)))
        query = Query(text)
        assert index.search(query).run().tolist() == reference_positions(store, query), repr(text)


# ----- "All history": the history on disk --------------------------------------------------------


def history_with_rows(tmp_path, n: int, seed: int = 21):
    from app.history import HistoryWriter, Retention

    rnd = random.Random(seed)
    # The rows are from 2023: no retention by age, or the writer would delete them.
    writer = HistoryWriter(tmp_path / "history.sqlite3", Retention(max_age_days=None))
    ids = writer.take_ids(n)
    rows = [(row_id, *random_row(rnd, row_id)[1:]) for row_id in ids]
    for i in range(0, n, 500):
        writer.append(rows[i : i + 500])
    writer.close()
    return tmp_path / "history.sqlite3", rows


def shown_ids(model) -> list[int]:
    return [model.row_at(model.position(r))["id"] for r in range(model.rowCount())]


@pytest.mark.parametrize(("text", "regex"), [("env-sensor-00", False), ("7", False), (r"^70b3.*0[1-4]$", True)])
def test_all_history_finds_rows_no_longer_in_memory(qtbot, tmp_path, text, regex):
    from app.history import HistoryReader
    from ui.workspace.platform_workspace import PlatformWorkspace

    path, rows = history_with_rows(tmp_path, 3000)
    ws = PlatformWorkspace(max_rows=800)
    qtbot.addWidget(ws)
    ws.history = HistoryReader(path)
    for batch in ws.history.load_recent(800):
        ws.ingest([batch])
    ws.model.announce()
    assert len(ws.store) == 800 and ws.store.value(ws.store.base, "id") == rows[-800][0]
    bar = ws.filter_bar
    bar.regex.setChecked(regex)
    bar.all_history.setChecked(True)
    bar.text.setText(text)
    bar._debounce.stop()  # as if the typing pause had passed
    bar.apply()
    qtbot.waitUntil(lambda: not ws.history_searching and not ws.model.searching, timeout=20_000)
    query = Query(text, regex)
    expected = [row[0] for row in rows if query.matches_row(dict(zip(ROW_FIELDS, row, strict=True)))]
    assert shown_ids(ws.model) == expected  # the older ones from disk above, newest at the bottom
    assert ws.model.history_rows == sum(1 for i in expected if i < rows[-800][0]) > 0
    assert "older from the history on disk" in ws.count_label.text()
    # The details pane reads a row found on disk like any other.
    ws.show_details(ws.model.position(0))
    assert ws.details.header.text()
    ws.history.close()


def test_a_new_keystroke_cancels_the_history_search(qtbot, tmp_path):
    from app.history import HistoryReader
    from ui.workspace.platform_workspace import PlatformWorkspace

    path, rows = history_with_rows(tmp_path, 6000, seed=4)
    ws = PlatformWorkspace(max_rows=500)
    qtbot.addWidget(ws)
    ws.history = HistoryReader(path)
    for batch in ws.history.load_recent(500):
        ws.ingest([batch])
    ws.model.announce()
    bar = ws.filter_bar
    bar.all_history.setChecked(True)
    for text in ["a", "ab", "abc", "e"]:
        bar.text.setText(text)
        bar._debounce.stop()
        bar.apply()
    qtbot.waitUntil(lambda: not ws.history_searching and not ws.model.searching, timeout=20_000)
    qtbot.wait(200)  # pages of the cancelled searches that were on their way
    query = Query("e")
    assert shown_ids(ws.model) == [r[0] for r in rows if query.matches_row(dict(zip(ROW_FIELDS, r, strict=True)))]
    bar.all_history.setChecked(False)
    qtbot.waitUntil(lambda: not ws.model.searching, timeout=20_000)
    assert ws.model.history_rows == 0
    ws.history.close()


def test_a_regex_is_narrowed_by_the_text_every_match_holds():
    assert Query(r"Temp.*23\.2", regex=True).literals == (b"temp", b"23.2")
    assert Query(r"a|bc", regex=True).literals == ()  # a branch: no text is certain
    assert Query(r"ab?c", regex=True).literals == ()
    assert Query(r"^0917", regex=True).literals == (b"0917",)
