"""Reopening a connection shows its newest rows first and puts the older history above them as
it arrives (EventStore.prepend_columns, UplinkTableModel.prepend_history): positions of the rows
shown never change, and everything that looks at rows (filtered views, the search index, a search
typed meanwhile, platform-level duplicates, device statistics, a view scrolled up) ends up as if
the rows had arrived in order."""

from __future__ import annotations

import random

import pytest

from app.devices import DeviceTracker
from app.search import Query, SearchIndex, reference_positions
from app.store import ROW_FIELDS, EventStore, Filter, columns_from_rows
from tests.test_search import random_row


def rows_in_order(n: int, seed: int = 5) -> list[tuple]:
    rnd = random.Random(seed)
    return [random_row(rnd, i) for i in range(n)]


def newest_first(rows: list[tuple], first: int, chunk: int) -> list[dict]:
    """Column batches as the engine replays them: the newest `first` rows, then ever older chunks."""
    out, hi, size = [], len(rows), first
    while hi > 0:
        lo = max(0, hi - size)
        out.append(columns_from_rows(rows[lo:hi]))
        hi, size = lo, chunk
    return out


def column_values(store: EventStore) -> list[tuple]:
    return [tuple(store.value(p, name) for name in ROW_FIELDS) for p in range(store.base, store.end)]


def in_order_store(rows: list[tuple]) -> EventStore:
    store = EventStore()
    store.append_columns(columns_from_rows(rows))
    return store


# ----- the store ------------------------------------------------------------------------------


def test_prepended_rows_go_above_and_the_rows_held_keep_their_positions():
    rows = rows_in_order(3_000)
    history, live = rows[:2_500], rows[2_500:]
    store = EventStore()
    store.reserve_below(2_500)
    batches = newest_first(history, 300, 700)
    assert store.prepend_columns(batches[0]) == 300
    store.append_columns(columns_from_rows(live))  # live rows arrive meanwhile
    live_positions = {r[0]: p for p, r in zip(range(store.base + 300, store.end), live, strict=True)}
    for b in batches[1:]:
        store.prepend_columns(b)
    assert store.base == 0 and len(store) == 3_000
    assert column_values(store) == column_values(in_order_store(rows)), "as if every row came in order"
    for row_id, pos in live_positions.items():
        assert store.value(pos, "id") == row_id, "a live row keeps its position"
    reference = in_order_store(rows)
    for key in reference.device_index:
        assert list(store.device_index[key]) == list(reference.device_index[key])
    flt = Filter(kinds=frozenset({"uplink"}), f_port=1)
    assert list(store.matching(flt)) == list(reference.matching(flt))
    assert list(store.matching(flt, start=700, stop=1_900)) == [p for p in reference.matching(flt) if 700 <= p < 1_900]
    device = next(iter(reference.device_index))
    assert list(store.matching(Filter(device=device), start=100, stop=200)) == [
        p for p in reference.device_index[device] if 100 <= p < 200
    ]
    part = store.columns(1_000, 1_010)
    assert list(part["id"]) == [r[0] for r in rows[1_000:1_010]]
    assert part["device_key"] == [
        r[ROW_FIELDS.index("dev_eui")] or r[ROW_FIELDS.index("device_id")] for r in rows[1_000:1_010]
    ]


def test_a_prepend_takes_only_what_fits_and_a_bad_batch_changes_nothing():
    rows = rows_in_order(1_000)
    store = EventStore(max_rows=600)
    store.reserve_below(1_000)
    store.append_columns(columns_from_rows(rows[900:]))
    assert store.prepend_columns(columns_from_rows(rows[:900])) == 500, "the newest rows that fit"
    assert [store.value(p, "id") for p in range(store.base, store.end)] == [r[0] for r in rows[400:]]
    assert store.prepend_columns(columns_from_rows(rows[:10])) == 0, "the table is full"
    before = column_values(store), store.base
    bad = columns_from_rows(rows[:5])
    bad["rssi"] = ["loud"] * 5
    store.max_rows = 2_000
    with pytest.raises(ValueError, match="the table is as it was"):
        store.prepend_columns(bad)
    short = columns_from_rows(rows[:5])
    short["kind"] = short["kind"][:3]
    with pytest.raises(ValueError, match="kind column has 3 values"):
        store.prepend_columns(short)
    assert (column_values(store), store.base) == before


def test_prepends_fill_the_slots_set_aside_without_moving_the_columns():
    """Prepends after reserve_below set slots aside for the rows the replay brings and fill them
    in place (the columns keep their length: nothing moves), and every reader sees only rows."""
    from app.export import take_rows

    rows = rows_in_order(3_000)
    history, live = rows[:2_500], rows[2_500:]
    store = EventStore()
    store.reserve_below(2_500)
    assert store.room == 0 and len(store) == 0 and store.end == 2_500
    store.append_columns(columns_from_rows(live))
    reference = in_order_store(rows)
    physical = None
    for i, b in enumerate(newest_first(history, 300, 700)):
        store.prepend_columns(b)
        if physical is None:  # the first prepend sets aside slots for every row expected (a small store)
            physical = len(store.cols["ts"])
            assert physical == 3_000
        assert len(store.cols["ts"]) == physical, "filled in place"
        assert store.room == store.base, "the slots left are those of the rows still to come"
        assert column_values(store) == [
            tuple(reference.value(p, name) for name in ROW_FIELDS) for p in range(store.base, store.end)
        ]
        flt = Filter(kinds=frozenset({"uplink"}))
        assert list(store.matching(flt)) == [p for p in reference.matching(flt) if p >= store.base], i
        part = store.columns(0, store.end)  # from below the oldest row: only rows
        assert list(part["id"]) == [r[0] for r in rows[store.base :]]
        picked = take_rows(store, [0, store.base, store.end - 1])  # position 0: not there until the last
        assert picked.rows == (2 if store.base else 3)
        assert list(picked.cols["id"] if picked.pick is None else [picked.cols["id"][i] for i in picked.pick])[-2:] == [
            rows[store.base][0],
            rows[-1][0],
        ]
        assert store.row(store.base) == reference.row(store.base)
        assert store.is_dup(store.base) == reference.is_dup(store.base)
    assert store.room == 0 and store.base == 0 and len(store) == 3_000


def test_slots_a_replay_did_not_fill_are_given_back_and_trimming_takes_them_first():
    rows = rows_in_order(2_000)
    store = EventStore(max_rows=1_500, trim_chunk=100)
    store.reserve_below(1_000)
    store.append_columns(columns_from_rows(rows[1_000:1_200]))
    store.prepend_columns(columns_from_rows(rows[700:1_000]))  # 300 of the 1,000 expected
    store.release_room()
    assert store.room == 0 and len(store.cols["ts"]) == len(store) == 500
    assert [store.value(p, "id") for p in range(store.base, store.end)] == [r[0] for r in rows[700:1_200]]
    assert store.prepend_columns(columns_from_rows(rows[600:700])) == 100, "an older batch still goes above"
    # Live rows beyond max_rows while slots are set aside: the trim gives them back too.
    store = EventStore(max_rows=1_500, trim_chunk=100)
    store.reserve_below(1_000)
    store.append_columns(columns_from_rows(rows[1_000:1_100]))
    store.prepend_columns(columns_from_rows(rows[900:1_000]))
    trimmed = store.append_columns(columns_from_rows(rows[1_100:2_000]))
    assert trimmed == 0 and store.room == 900, "rows, not slots, count against max_rows"
    assert store.prepend_columns(columns_from_rows(rows[300:900])) == 400, "what fits under max_rows"
    assert len(store) == 1_500 and store.room == 500
    store.max_rows = 1_300
    assert store.trim() == 200 and store.room == 0 and len(store.cols["ts"]) == 1_300
    assert [store.value(p, "id") for p in range(store.base, store.end)] == [r[0] for r in rows[700:2_000]]
    # More rows than the slots set aside: the rest go above as before (the columns move).
    store = EventStore()
    store.reserve_below(1_000, expected=100)
    store.prepend_columns(columns_from_rows(rows[500:1_000]))
    assert store.room == 0 and [store.value(p, "id") for p in range(store.base, store.end)] == [
        r[0] for r in rows[500:1_000]
    ]


def test_a_long_replay_takes_slots_built_by_a_thread_and_then_moves_nothing():
    import time

    from app import store as store_module

    rows = rows_in_order(2_000)
    batch = columns_from_rows(rows)
    ids = [r[0] for r in rows]
    store = EventStore(max_rows=400_000)
    store.reserve_below(300_000)
    assert store.room_building and store.room == 0
    store.append_columns(columns_from_rows(rows[:50]))
    assert store.prepend_columns(batch) == 2_000  # before the slots are ready: the columns move
    deadline = time.monotonic() + 30
    while store.room_building and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not store.room_building
    assert store.prepend_columns(batch) == 2_000  # takes the slots over
    physical = len(store.cols["ts"])
    assert physical == 300_000 + store_module.ROOM_SPARE
    assert store.room == physical - len(store)
    for _ in range(148):
        assert store.prepend_columns(batch) == 2_000
        assert len(store.cols["ts"]) == physical, "filled in place"
    assert store.base == 0 and len(store) == 300_050 and store.room == store_module.ROOM_SPARE - 50
    assert [store.value(p, "id") for p in range(0, 4_000)] == ids + ids
    assert [store.value(p, "id") for p in range(store.end - 2_050, store.end)] == ids + ids[:50]
    assert list(store.columns(0, 2_000)["id"]) == ids
    store.end_replay()
    assert store.room == store_module.ROOM_SPARE - 50, "a few slots left over stay (giving them back moves it all)"
    # A replay cut short leaves many: they are given back.
    store = EventStore(max_rows=400_000)
    store.reserve_below(300_000)
    while store.room_building:
        time.sleep(0.01)
    store.prepend_columns(batch)
    assert store.room > 200_000
    store.end_replay()
    assert store.room == 0 and len(store.cols["ts"]) == len(store) == 2_000
    # More rows came meanwhile than the built columns have slots: they are not taken, and the slots
    # are set aside the short way (one move) instead.
    store = EventStore(max_rows=400_000)
    store.reserve_below(70_000)
    for _ in range((70_000 + store_module.ROOM_SPARE) // 2_000 + 1):
        store.append_columns(batch)
    while store.room_building:
        time.sleep(0.01)
    before = len(store)
    assert store.prepend_columns(batch) == 2_000
    assert len(store) == before + 2_000 and store.room == 70_000 - 2_000
    assert len(store.cols["ts"]) == len(store) + store.room
    assert [store.value(p, "id") for p in range(store.base, store.base + 2_000)] == ids
    # Cleared while the thread builds: nothing of it is taken.
    store = EventStore(max_rows=400_000)
    store.reserve_below(300_000)
    store.clear()
    assert not store.room_building
    time.sleep(0.2)
    store.prepend_columns(batch)
    assert store.room == 0 and len(store.cols["ts"]) == len(store) == 2_000


def test_no_prepend_after_a_trim_takes_the_positions_of_the_rows_trimmed():
    """Rows trimmed were newer than any older row a replay still brings, and their positions may
    still be named (a piece of the search index spans them): once rows were trimmed, nothing is
    put below them, even with the limit raised."""
    rows = rows_in_order(400, seed=3)
    store = EventStore(max_rows=100, trim_chunk=1)
    index = SearchIndex(store)
    store.reserve_below(200)
    store.append_columns(columns_from_rows(rows[200:350]))  # 150 rows: trimmed to 100
    index.catch_up()
    store.append_columns(columns_from_rows(rows[350:400]))
    index.catch_up()
    store.set_max_rows(300)
    base = store.base
    assert store.prepend_columns(columns_from_rows(rows[0:80])) == 0
    assert store.base == base and len(store) == 100
    while index.catch_up_below():
        pass
    query = Query("sensor", False)
    assert list(index.search(query).run(store.base)) == reference_positions(store, query)


def test_the_search_index_takes_prepended_rows_and_finds_what_the_scan_finds():
    rows = rows_in_order(6_000, seed=9)
    store = EventStore()
    index = SearchIndex(store)
    store.reserve_below(5_000)
    index.catch_up(0)
    batches = newest_first(rows[:5_000], 400, 1_300)
    store.prepend_columns(batches[0])
    store.append_columns(columns_from_rows(rows[5_000:]))
    index.catch_up()
    for b in batches[1:]:
        store.prepend_columns(b)
        index.catch_up_below(900)  # behind on purpose: the rest below is indexed after
    assert index.behind_below > 0
    while index.catch_up_below(700):
        pass
    assert index.behind_below == 0 and index.start == store.base
    for text in ("hum", "env-sensor-003", "70b3d57ed0050002", "kaputt", "zz-none", "7"):
        query = Query(text)
        assert list(index.search(query).run()) == reference_positions(store, query), text


# ----- the table ------------------------------------------------------------------------------


def shown(model) -> list[int]:
    return [model.position(r) for r in range(model.rowCount())]


def replay(qtbot, model, rows: list[tuple], live: list[tuple] | None = None) -> None:
    """Reserves, shows the newest batch, lets live rows in, then the older batches."""
    batches = newest_first(rows, 500, 2_000)
    model.reserve_history(len(rows))
    model.prepend_history(batches[:1])
    if live:
        model.ingest([columns_from_rows(live)])
        model.announce()
    for b in batches[1:]:
        model.prepend_history([b])
    qtbot.waitUntil(lambda: model.history_behind == 0, timeout=30_000)


def test_the_table_shows_prepended_rows_above_in_every_view(qtbot):
    from ui.workspace.uplink_table import UplinkTableModel

    rows = rows_in_order(12_000, seed=2)
    model = UplinkTableModel(EventStore())
    model.reserve_history(10_000)
    model.prepend_history(newest_first(rows[:10_000], 500, 2_000)[:1])
    assert model.rowCount() == 500 and model.position(0) == model.store.base
    assert model.store.value(model.position(499), "id") == rows[9_999][0], "the newest row is at the bottom"
    model.set_filter(Filter(kinds=frozenset({"uplink"})))  # a filter chosen while the history loads
    model.ingest([columns_from_rows(rows[10_000:])])
    model.announce()
    for b in newest_first(rows[:10_000], 500, 2_000)[1:]:
        model.prepend_history([b])
    reference = in_order_store(rows)
    ids = [model.store.value(p, "id") for p in shown(model)]
    assert ids == [reference.value(p, "id") for p in reference.matching(model.filter)]
    model.set_filter(Filter())
    assert [model.store.value(p, "id") for p in shown(model)] == [r[0] for r in rows]


@pytest.mark.parametrize("when", ["before", "during"])
def test_a_search_typed_while_the_history_loads_finds_the_older_rows_too(qtbot, when):
    from ui.workspace.uplink_table import UplinkTableModel

    rows = rows_in_order(30_000, seed=4)
    model = UplinkTableModel(EventStore())
    batches = newest_first(rows[:28_000], 500, 2_000)
    model.reserve_history(28_000)
    if when == "before":
        model.set_filter(Filter(text="hum", kinds=frozenset({"uplink"})))
    model.prepend_history(batches[:3])
    model.ingest([columns_from_rows(rows[28_000:])])
    model.announce()
    if when == "during":
        model.set_filter(Filter(text="hum", kinds=frozenset({"uplink"})))
    for b in batches[3:]:
        model.prepend_history([b])
        qtbot.wait(1)
    qtbot.waitUntil(lambda: model.history_behind == 0 and not model.searching, timeout=30_000)
    qtbot.wait(50)
    reference = in_order_store(rows)
    expected = [reference.value(p, "id") for p in reference.matching(model.filter)]
    got = [model.store.value(p, "id") for p in shown(model)]
    assert got == expected and len(got) > 1_000


def repeat_rows(n: int) -> list[tuple]:
    """Uplinks of 3 devices, every 7th repeating the frame counter of that device's last uplink."""
    out = []
    counters = [0, 0, 0]
    for i in range(n):
        d = i % 3
        values = dict.fromkeys(ROW_FIELDS)
        if i % 7 == 0 and counters[d]:
            fc = counters[d]
        else:
            counters[d] += 1
            fc = counters[d]
        values.update(
            id=i,
            ts=1.7e9 + i,
            platform="tts",
            kind="uplink",
            device_id=f"dev-{d}",
            dev_eui=f"00000000000000{d:02X}",
            f_cnt=fc,
        )
        out.append(tuple(values[name] for name in ROW_FIELDS))
    return out


def test_duplicates_across_batches_are_found_once_the_history_is_complete(qtbot):
    from ui.workspace.uplink_table import UplinkTableModel

    rows = repeat_rows(9_000)
    reference = UplinkTableModel(EventStore())
    reference.ingest([columns_from_rows(rows)])
    reference.announce()
    expected = [reference.store.value(p, "id") for p in reference.repeats]
    assert len(expected) > 1_000

    model = UplinkTableModel(EventStore())
    model.set_filter(Filter(), hide_duplicates=True)
    replay(qtbot, model, rows[:8_000], live=rows[8_000:])
    model.history_complete()
    qtbot.waitUntil(lambda: model._recount is None, timeout=30_000)
    assert [model.store.value(p, "id") for p in model.repeats] == expected
    assert len(shown(model)) == 9_000 - len(expected), "hidden, never dropped"
    assert model.duplicates_in_memory == len(expected)
    # Live rows after the recount go on from the right counters.
    more = repeat_rows(9_100)[9_000:]
    model.ingest([columns_from_rows(more)])
    model.announce()
    reference.ingest([columns_from_rows(more)])
    reference.announce()
    assert [model.store.value(p, "id") for p in model.repeats] == [
        reference.store.value(p, "id") for p in reference.repeats
    ]


def test_the_workspace_counts_the_devices_again_in_order(qtbot):
    from ui.workspace.platform_workspace import PlatformWorkspace

    rows = rows_in_order(20_000, seed=8)
    ws = PlatformWorkspace()
    qtbot.addWidget(ws)
    ws.begin_history(18_000)
    assert "loading older rows" in ws.count_label.text()
    batches = newest_first(rows[:18_000], 500, 3_000)
    ws.prepend_history(batches[:1])
    ws.ingest([columns_from_rows(rows[18_000:])])
    for b in batches[1:]:
        ws.prepend_history([b])
    ws.history_finished()
    qtbot.waitUntil(lambda: ws._devices_recount is None, timeout=30_000)
    reference = DeviceTracker()
    reference.update(columns_from_rows(rows))
    assert list(ws.tracker) == list(reference)
    for key in reference:
        a, b = ws.tracker.stats(key), reference.stats(key)
        assert (a.uplinks, a.missed, a.duplicates, a.resets, a.last_f_cnt, a.errors) == (
            b.uplinks,
            b.missed,
            b.duplicates,
            b.resets,
            b.last_f_cnt,
            b.errors,
        ), key
    assert ws.devices.model.rowCount() == len(reference)
    ws._update_count()
    assert "loading" not in ws.count_label.text() and f"{len(reference):,} devices" in ws.count_label.text()


def test_a_view_scrolled_up_holds_still_while_older_rows_come_in(qtbot):
    from ui.workspace.uplink_table import UplinkTableModel, UplinkTableView

    rows = rows_in_order(8_000, seed=3)
    model = UplinkTableModel(EventStore())
    view = UplinkTableView(model)
    qtbot.addWidget(view)
    view.resize(900, 400)
    view.show()
    batches = newest_first(rows, 2_000, 2_000)
    model.reserve_history(8_000)
    model.prepend_history(batches[:1])
    qtbot.wait(20)
    view.scrollTo(model.index(1_000, 0), view.ScrollHint.PositionAtTop)
    top = view.rowAt(0)
    top_id = model.store.value(model.position(top), "id")
    for b in batches[1:]:
        model.prepend_history([b])
        qtbot.wait(5)
    assert model.rowCount() == 8_000
    assert model.store.value(model.position(view.rowAt(0)), "id") == top_id, "the same row stays at the top"
    view.scrollToBottom()
    model.ingest([columns_from_rows(rows_in_order(10, seed=99))])
    model.announce()
    qtbot.wait(20)
    assert view.at_bottom(), "at the bottom it follows the live rows"


@pytest.mark.parametrize("seed", range(9))
def test_random_interleavings_of_history_live_rows_filters_and_trimming(qtbot, monkeypatch, seed):
    """Whatever the order of replayed batches, live rows, filters, searches and trimming, the view
    shows what the same filter shows over the same rows appended in order. Seeds 6 and up build
    the slots in a thread (as for a long replay), with few spare ones (taken over late, or too
    late to be taken at all)."""
    from app import store as store_module
    from ui.workspace.uplink_table import UplinkTableModel

    if seed >= 6:
        monkeypatch.setattr(store_module, "ROOM_BUILD_MIN", 1)
        monkeypatch.setattr(store_module, "ROOM_SPARE", [3_000, 600, 50][seed - 6])
    rnd = random.Random(seed)
    total = 9_000
    rows = rows_in_order(total, seed=100 + seed)
    split = rnd.randrange(3_000, 8_000)
    max_rows = rnd.choice([20_000, 7_000])
    model = UplinkTableModel(EventStore(max_rows=max_rows, trim_chunk=500))
    batches = newest_first(rows[:split], rnd.randrange(50, 600), rnd.randrange(300, 2_500))
    live = rows[split:]
    model.reserve_history(split)
    if seed in (6, 7):  # the slots are ready before the first batch (seed 8: whenever they are)
        qtbot.waitUntil(lambda: not model.store.room_building, timeout=10_000)
    filters = [
        Filter(),
        Filter(kinds=frozenset({"uplink"})),
        Filter(text="hum"),
        Filter(text="env-sensor-00", f_port=1),
        Filter(device="70B3D57ED0050003"),
    ]
    while batches or live:
        step = rnd.random()
        if batches and step < 0.45:
            model.prepend_history([batches.pop(0)])
        elif live and step < 0.8:
            k = rnd.randrange(1, 700)
            model.ingest([columns_from_rows(live[:k])])
            live = live[k:]
            if rnd.random() < 0.7:
                model.announce()
        elif step < 0.9:
            model.set_filter(rnd.choice(filters), hide_duplicates=rnd.random() < 0.3)
        else:
            qtbot.wait(rnd.randrange(0, 15))
    model.announce()
    model.history_complete()
    qtbot.waitUntil(
        lambda: model.history_behind == 0 and not model.searching and model._recount is None, timeout=30_000
    )
    qtbot.wait(200)  # the last slice of matches below is published
    store = model.store
    kept = rows[-len(store) :]
    assert [store.value(p, "id") for p in range(store.base, store.end)] == [r[0] for r in kept]
    reference = UplinkTableModel(EventStore(max_rows=10**6))
    reference.ingest([columns_from_rows(kept)])
    reference.announce()
    reference.set_filter(model.filter, hide_duplicates=model.hide_duplicates)
    qtbot.waitUntil(lambda: not reference.searching, timeout=30_000)
    got = [store.value(p, "id") for p in shown(model)]
    want = [reference.store.value(p, "id") for p in shown(reference)]
    assert got == want, (model.filter, model.hide_duplicates)


def test_a_search_started_while_the_index_is_behind_shows_each_older_match_once(qtbot, monkeypatch):
    """The search's job starts only once the index holds the rows it covers: rows indexed below
    meanwhile are its own, not matched a second time from below."""
    from ui.workspace import uplink_table
    from ui.workspace.uplink_table import UplinkTableModel

    monkeypatch.setattr(uplink_table, "FIRST_SLICE", 0.0)  # a fast machine indexes 60,000 rows in one slice

    rows = rows_in_order(70_000, seed=12)
    model = UplinkTableModel(EventStore())
    batches = newest_first(rows[:10_000], 2_000, 2_000)
    model.reserve_history(10_000)
    model.prepend_history(batches[:1])
    model.ingest([columns_from_rows(rows[10_000:])])  # 60,000 live rows, not indexed yet
    model.announce()
    assert model.search_index.behind > 30_000
    model.set_filter(Filter(text="hum"))
    assert model._job is None and model.searching, "the job waits for the index"
    for b in batches[1:]:
        model.prepend_history([b])
        qtbot.wait(2)
    qtbot.waitUntil(lambda: model.history_behind == 0 and not model.searching, timeout=30_000)
    qtbot.wait(200)
    got = [model.store.value(p, "id") for p in shown(model)]
    assert len(got) == len(set(got)), "no row twice"
    reference = in_order_store(rows)
    assert got == [reference.value(p, "id") for p in reference.matching(model.filter)]


def test_clear_while_the_history_loads_keeps_the_table_empty(qtbot):
    from ui.workspace.platform_workspace import PlatformWorkspace

    rows = rows_in_order(6_000, seed=6)
    ws = PlatformWorkspace()
    qtbot.addWidget(ws)
    ws.begin_history(6_000)
    batches = newest_first(rows, 1_000, 1_000)
    ws.prepend_history(batches[:2])
    assert ws.model.rowCount() == 2_000
    ws.clear()
    for b in batches[2:]:
        ws.prepend_history([b])  # the rest of the replay, still arriving
    ws.history_finished()
    assert len(ws.store) == 0 and ws.model.rowCount() == 0 and not ws.history_loading
    ws.ingest([columns_from_rows(rows_in_order(10, seed=60))])
    ws.model.announce()
    assert ws.model.rowCount() == 10, "live rows after the Clear are shown"
    ws._update_count()
    assert "loading" not in ws.count_label.text()


def test_a_recount_that_hides_more_rows_asks_for_the_filter_again_when_disk_rows_are_shown(qtbot):
    from ui.workspace.uplink_table import UplinkTableModel

    rows = repeat_rows(6_000)
    model = UplinkTableModel(EventStore())
    model.set_filter(Filter(kinds=frozenset({"uplink"})), hide_duplicates=True)
    replay(qtbot, model, rows)
    model.add_history_rows(list(reversed(repeat_rows(20))))  # as "All history" shows rows from disk
    asked = []
    model.refilter_needed.connect(lambda: asked.append(True))
    model.history_complete()
    qtbot.waitUntil(lambda: model._recount is None, timeout=30_000)
    assert asked == [True] and model.history_rows == 20, "the rows from disk stay until the owner searches again"
