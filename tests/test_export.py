"""Exporting the current filter to CSV / JSON lines: content, atomicity, errors, and the dialog."""

from __future__ import annotations

import csv
import datetime as dt
import errno
import io
import os
import time
from itertools import pairwise
from pathlib import Path

import orjson
import pytest

import app.export as export_mod
from app import platforms
from app.events import EVENT_KEYS
from app.export import OUT_KEYS, ExportCancelled, ExportError, export_rows, iso_ms, take_rows
from app.store import ROW_FIELDS, EventStore, Filter, columns_from_rows

SAMPLES = Path(__file__).resolve().parent / "samples"
HEADER = ["time", "id", *EVENT_KEYS]

DEVICES = ["0004A30B00000001", "0004A30B00000002", "70B3D57ED0000003", None]
KINDS = ["uplink", "join", "downlink_ack", "error"]
ERRORS = [None, 'bad "frame", dropped', "line one\nline two", "cr\ronly", "Grüße ✓ 設備", "  padded  "]


def make_row(i: int) -> tuple:
    """A row with every kind of value an export must get right (None, NaN, quotes, newlines …)."""
    eui = DEVICES[i % len(DEVICES)]
    decoded = None
    if i % 3 == 1:
        decoded = orjson.dumps({"temp": 20 + i % 7 / 4, "label": 'say "hi", ok', "nested": {"list": [1, None, True]}})
    elif i % 3 == 2:
        decoded = orjson.dumps([i, "ünïcode"])
    values = {
        "id": None if i % 11 == 0 else 1000 + i,
        "ts": None if i == 7 else 1_700_000_000 + i * 0.0137,
        "platform": "tts",
        "kind": KINDS[i % len(KINDS)],
        "application_id": "app-1",
        "device_id": None if eui and i % 2 else f"dev-{i % 5}",
        "dev_eui": eui,
        "dev_addr": None if i % 9 == 0 else "260B0001",
        "f_port": None if i % 4 == 3 else (i % 3) + 1,
        "f_cnt": None if i % 13 == 0 else i,
        "payload": None if i % 6 == 0 else bytes([i % 256, 0xAB, 0x00, 0x2C]),
        "decoded": decoded,
        "rssi": None if i % 10 == 0 else -float(40 + i % 80),
        "snr": None if i % 3 == 0 else (7.25 if i % 2 else -0.5),
        "gateway_id": ["gw-a", "gw-b", None][i % 3],
        "gateways": None if i % 8 == 0 else 1 + i % 3,
        "spreading_factor": 7 + i % 6,
        "bandwidth_hz": 125000,
        "frequency_hz": 868100000 + 200000 * (i % 8),
        "error": ERRORS[i % len(ERRORS)],
        "topic": f"v3/app-1@ttn/devices/dev-{i % 5}/up" if i % 17 else 'weird,topic "with" quotes',
    }
    return tuple(values[name] for name in ROW_FIELDS)


def build_store(n: int, max_rows: int | None = None) -> EventStore:
    store = EventStore(max_rows=max_rows or max(n, 1))
    store.append_columns(columns_from_rows([make_row(i) for i in range(n)]))
    return store


def event_row(event, ts: float, row_id: int | None) -> tuple:
    """A parsed Event as a store row (what the engine does)."""
    values = event.to_dict() | {
        "id": row_id,
        "ts": ts,
        "payload": bytes.fromhex(event.payload_hex) if event.payload_hex else None,
        "decoded": orjson.dumps(event.decoded) if event.decoded is not None else None,
    }
    return tuple(values[name] for name in ROW_FIELDS)


# ----- what the export should contain, computed independently --------------------------------


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expected(store: EventStore, positions, extra=None) -> list[dict]:
    out = []
    for pos in positions:
        if not store.base <= pos < store.end:
            continue
        row = store.row(pos)
        time_ = iso(row["ts"])
        got = extra(row["id"]) if extra and row["id"] is not None else None
        obj = {"time": time_, "id": row["id"]}
        for key in EVENT_KEYS:
            if key == "payload_hex":
                obj[key] = row["payload"].hex() if row["payload"] else None
            elif key == "decoded":
                obj[key] = orjson.loads(row["decoded"]) if row["decoded"] else None
            elif key == "received_at":
                obj[key] = got[0] if got and got[0] else time_
            elif key == "correlation_ids":
                obj[key] = list(got[1]) if got and got[1] else []
            else:
                obj[key] = row[key]
        out.append(obj)
    return out


def as_csv_fields(obj: dict) -> list[str]:
    fields = []
    for key in HEADER:
        v = obj[key]
        if v is None:
            fields.append("")
        elif key == "decoded":
            fields.append(orjson.dumps(v).decode())
        elif key == "correlation_ids":
            fields.append(" ".join(v))
        else:
            fields.append(str(v))
    return fields


def read_jsonl(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n") and b"\r" not in data
    return [orjson.loads(line) for line in data.splitlines()]


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def csv_module_bytes(header, rows) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def check_files(store, positions, tmp_path: Path, extra=None, name="out") -> int:
    """Exports positions to both formats and checks every field of every row."""
    want = expected(store, positions, extra)
    jsonl = tmp_path / f"{name}.jsonl"
    assert export_rows(store, positions, jsonl, "jsonl", extra=extra) == len(want)
    got = read_jsonl(jsonl)
    assert [list(o) for o in got] == [list(OUT_KEYS)] * len(got)  # exactly these keys, in this order
    assert got == want
    path = tmp_path / f"{name}.csv"
    assert export_rows(store, positions, path, "csv", extra=extra) == len(want)
    header, rows = read_csv(path)
    assert header == HEADER
    want_fields = [as_csv_fields(o) for o in want]
    assert rows == want_fields
    # Byte for byte what the csv module writes (RFC 4180 quoting, CRLF line ends, UTF-8).
    assert path.read_bytes() == csv_module_bytes(HEADER, want_fields)
    return len(want)


# ----- content ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flt",
    [
        Filter(),  # contiguous positions: column slices
        Filter(kinds=frozenset({"uplink", "error"})),  # close together: span + pick
        Filter(device="70B3D57ED0000003", f_port=2),  # sparse: cell by cell
        Filter(text="grüße"),
        Filter(gateway="gw-b", kinds=frozenset({"join"})),
    ],
)
def test_filtered_rows_export_field_by_field(tmp_path, flt):
    store = build_store(3000)
    positions = store.matching(flt)
    assert 0 < len(positions) <= 3000
    assert check_files(store, positions, tmp_path) == len(positions)


def test_positions_in_any_order_with_repeats_and_a_single_row(tmp_path):
    store = build_store(500)
    check_files(store, list(range(499, -1, -7)), tmp_path, name="reversed")
    check_files(store, [3, 3, 4, 2, 10, 10], tmp_path, name="repeats")
    check_files(store, [42], tmp_path, name="one")


def test_empty_selection_writes_only_the_header(tmp_path):
    store = build_store(10)
    assert export_rows(store, [], tmp_path / "e.csv", "csv") == 0
    assert (tmp_path / "e.csv").read_bytes() == b",".join(k.encode() for k in HEADER) + b"\r\n"
    assert export_rows(store, [], tmp_path / "e.jsonl", "jsonl") == 0
    assert (tmp_path / "e.jsonl").read_bytes() == b""


def test_real_tts_uplink_round_trips_to_the_normalized_event(tmp_path):
    topic = "v3/app1@ttn/devices/dev1/up"
    (event,) = platforms.get("tts").parse(topic, (SAMPLES / "tts_up_1.json").read_bytes())
    event.decoded = {"temperature": 21.5, "text": "Temperature = 0.0"}  # the sample has none
    received = dt.datetime.fromisoformat(event.received_at)
    store = EventStore()
    store.append_rows([event_row(event, received.timestamp(), 77)])
    extra = {77: (event.received_at, event.correlation_ids)}.get

    (obj,) = expected(store, [0], extra)
    check_files(store, [0], tmp_path, extra=extra)
    (got,) = read_jsonl(tmp_path / "out.jsonl")
    assert got.pop("id") == 77
    assert got.pop("time") == received.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert got == event.to_dict()  # every normalized field as the parser made it
    header, (row,) = read_csv(tmp_path / "out.csv")
    fields = dict(zip(header, row, strict=True))
    assert fields["correlation_ids"] == " ".join(event.correlation_ids)
    assert fields["payload_hex"] == event.payload_hex
    assert fields["rssi"] == "-35.0" and fields["f_port"] == "15" and fields["snr"] == "5.0"
    assert fields["decoded"] == orjson.dumps(event.decoded).decode()  # compact JSON text
    assert obj["received_at"] == event.received_at


def test_extra_supplies_received_at_and_correlation_ids(tmp_path):
    store = build_store(200)
    extra_calls = []

    def extra(row_id):
        extra_calls.append(row_id)
        if row_id % 2:
            return None  # not in the history: defaults
        return (f"2024-01-01T00:00:{row_id % 60:02d}.5Z", [f"as:up:{row_id}", "gs:uplink:x"])

    check_files(store, store.matching(Filter()), tmp_path, extra=extra)
    assert extra_calls and None not in extra_calls  # only rows with a history id are looked up
    got = read_jsonl(tmp_path / "out.jsonl")
    with_history = [o for o in got if o["id"] is not None and o["id"] % 2 == 0]
    assert with_history and all(o["correlation_ids"][1] == "gs:uplink:x" for o in with_history)


@pytest.mark.parametrize(
    "ts", [0.0, 1_700_000_000.0, 1_700_000_000.123, 1_700_000_000.9995, 1_700_000_000.99949, 1_763_776_987.489883, -1.5]
)
def test_times_are_utc_iso_with_milliseconds_as_datetime_writes_them(ts):
    assert iso_ms(ts) == iso(ts)
    assert iso_ms(ts).endswith("Z") and len(iso_ms(ts)) == len("2024-01-01T00:00:00.000Z")


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), 1e300])
def test_times_that_cannot_be_written_are_missing(ts):
    assert iso_ms(ts) is None


def test_undecodable_decoded_bytes_are_kept_as_text(tmp_path):
    store = EventStore()
    rows = [make_row(1), make_row(2)]
    rows[0] = rows[0][:11] + (b"not json {",) + rows[0][12:]
    store.append_rows(rows)
    export_rows(store, [0, 1], tmp_path / "x.jsonl", "jsonl")
    a, b = read_jsonl(tmp_path / "x.jsonl")
    assert a["decoded"] == "not json {"
    assert b["decoded"] == orjson.loads(make_row(2)[11])


def test_positions_trimmed_from_the_store_are_skipped(tmp_path):
    store = EventStore(max_rows=1000, trim_chunk=100)
    store.append_rows([make_row(i) for i in range(1000)])
    positions = store.matching(Filter())
    store.append_rows([make_row(i) for i in range(1000, 1250)])  # trims the oldest 250
    assert store.base == 250
    n = export_rows(store, positions, tmp_path / "t.jsonl", "jsonl")
    assert n == 750
    assert read_jsonl(tmp_path / "t.jsonl") == expected(store, range(250, 1000))
    batch = take_rows(store, [0, 249, 250, 1249, 1250])
    assert batch.requested == 5 and batch.rows == 2


def test_progress_is_reported_about_every_percent(tmp_path):
    store = build_store(20_000)
    calls = []
    export_rows(store, store.matching(Filter()), tmp_path / "p.csv", "csv", lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 20_000) and calls[-1] == (20_000, 20_000)
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert 50 <= len(calls) <= 110
    assert max(b - a for a, b in pairwise(done)) <= 20_000 * 0.02


# ----- cancelling and failing --------------------------------------------------------------------


def test_cancel_deletes_the_partial_file_and_keeps_an_existing_one(tmp_path):
    store = build_store(20_000)
    target = tmp_path / "keep.jsonl"
    target.write_bytes(b"the previous export\n")

    def progress(done, total):
        return done < total // 2  # cancel half way

    with pytest.raises(ExportCancelled):
        export_rows(store, store.matching(Filter()), target, "jsonl", progress)
    assert target.read_bytes() == b"the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]  # no temporary file left

    fresh = tmp_path / "fresh.csv"
    with pytest.raises(ExportCancelled):
        export_rows(store, store.matching(Filter()), fresh, "csv", lambda d, t: d == 0)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]


def test_a_progress_callback_returning_none_does_not_cancel(tmp_path):
    store = build_store(100)
    assert export_rows(store, range(100), tmp_path / "n.csv", "csv", lambda d, t: None) == 100


def test_an_existing_file_is_replaced_only_at_the_end(tmp_path):
    store = build_store(5000)
    target = tmp_path / "data.csv"
    target.write_text("old")
    seen = []

    def progress(done, total):
        seen.append(target.read_text())  # while writing, the old file is still the one there
        return True

    export_rows(store, range(5000), target, "csv", progress)
    assert set(seen) == {"old"}
    assert read_csv(target)[0] == HEADER


def test_missing_folder_gives_a_sentence(tmp_path):
    store = build_store(10)
    with pytest.raises(ExportError) as info:
        export_rows(store, range(10), tmp_path / "no" / "such" / "x.csv", "csv")
    message = str(info.value)
    assert "does not exist" in message and "choose" in message and message.endswith(".")


def test_a_folder_as_target_gives_a_sentence(tmp_path):
    with pytest.raises(ExportError, match="is a folder: choose a file name"):
        export_rows(build_store(1), [0], tmp_path, "csv")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_gives_a_sentence(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ExportError, match="You may not write to .*choose another folder"):
            export_rows(build_store(10), range(10), folder / "x.csv", "csv")
    finally:
        folder.chmod(0o700)


def test_permission_denied_gives_a_sentence(tmp_path, monkeypatch):
    def refuse(path, mode="r", *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(export_mod, "open", refuse, raising=False)
    with pytest.raises(ExportError) as info:
        export_rows(build_store(10), range(10), tmp_path / "x.csv", "csv")
    assert (
        str(info.value)
        == f"You may not write to {tmp_path}: choose another folder (for example your Documents folder)."
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_gives_a_sentence_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "open", lambda path, mode: open("/dev/full", "wb"), raising=False)  # noqa: SIM115
    with pytest.raises(ExportError, match="is full: free some space or choose another folder"):
        export_rows(build_store(3000), range(3000), tmp_path / "x.jsonl", "jsonl")
    assert list(tmp_path.iterdir()) == []


def test_target_that_cannot_be_replaced_gives_a_sentence(tmp_path, monkeypatch):
    def busy(src, dst):
        raise PermissionError(errno.EACCES, "in use")

    monkeypatch.setattr(export_mod.os, "replace", busy)
    target = tmp_path / "open-in-excel.csv"
    target.write_text("old")
    with pytest.raises(ExportError, match="open in another program"):
        export_rows(build_store(10), range(10), target, "csv")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["open-in-excel.csv"]


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="choose csv or jsonl"):
        export_rows(build_store(1), [0], tmp_path / "x.xml", "xml")


# ----- the dialog ------------------------------------------------------------------------------


@pytest.fixture
def save_as(monkeypatch):
    """QFileDialog.getSaveFileName answering with a set path (and recording what it was asked)."""
    from PySide6.QtWidgets import QFileDialog

    answer = {"path": "", "filter": "CSV (*.csv)", "asked": []}

    def fake(parent, caption, start, filters, selected=""):
        answer["asked"].append((start, filters, selected))
        return answer["path"], answer["filter"]

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake))
    return answer


def big_store(n: int, max_rows: int | None = None) -> EventStore:
    """n rows quickly: one 10k-row column batch appended again with new ids."""
    template = columns_from_rows([make_row(i) for i in range(10_000)])
    store = EventStore(max_rows=max_rows or n)
    for start in range(0, n, 10_000):
        store.append_columns(template | {"id": list(range(start, start + 10_000))})
    return store


def test_dialog_exports_the_filter_in_the_background(qtbot, tmp_path, save_as):
    from ui.export.export_dialog import FILE_FILTER, run_export

    store = build_store(3000)
    positions = store.matching(Filter(kinds=frozenset({"uplink"})))
    save_as["path"] = str(tmp_path / "uplinks")  # no extension typed: the chosen filter adds it
    save_as["filter"] = "JSON lines (*.jsonl)"
    messages = []
    job = run_export(None, store, positions, "uplinks.csv", status=messages.append)
    assert job is not None
    (start, filters, selected), *_ = save_as["asked"]
    assert filters == FILE_FILTER == "CSV (*.csv);;JSON lines (*.jsonl)"
    assert start.endswith("uplinks.csv") and selected == "CSV (*.csv)"
    qtbot.waitUntil(lambda: job.done, timeout=10_000)
    out = tmp_path / "uplinks.jsonl"
    assert job.fmt == "jsonl" and job.path == out
    assert read_jsonl(out) == expected(store, positions)
    assert messages == [f"Exported {len(positions):,} rows to {out}"]


def test_dialog_format_follows_the_typed_extension(qtbot, tmp_path, save_as):
    from ui.export.export_dialog import run_export

    store = build_store(100)
    save_as["path"] = str(tmp_path / "rows.csv")
    save_as["filter"] = "JSON lines (*.jsonl)"  # the typed extension wins
    job = run_export(None, store, range(100), "x", status=lambda m: None)
    qtbot.waitUntil(lambda: job.done, timeout=10_000)
    assert job.fmt == "csv" and read_csv(tmp_path / "rows.csv")[0] == HEADER


def test_dialog_nothing_to_do(qtbot, tmp_path, save_as):
    from ui.export.export_dialog import run_export

    messages = []
    assert run_export(None, build_store(10), [], "x.csv", status=messages.append) is None
    assert messages == ["Nothing to export: no rows match the filter."] and not save_as["asked"]
    save_as["path"] = ""  # the user closed the file dialog
    assert run_export(None, build_store(10), [1, 2], "x.csv", status=messages.append) is None
    assert len(messages) == 1


def test_dialog_error_is_a_message_box_not_a_crash(qtbot, tmp_path, save_as):
    from PySide6.QtWidgets import QMessageBox

    from ui.export.export_dialog import run_export

    save_as["path"] = str(tmp_path / "missing-folder" / "x.csv")
    job = run_export(None, build_store(100), range(100), "x.csv", status=lambda m: None)
    with qtbot.waitSignal(job.failed, timeout=10_000) as blocker:
        pass
    assert "does not exist" in blocker.args[0]
    assert job.done and job.error == blocker.args[0]
    box = job._error_box
    assert isinstance(box, QMessageBox) and box.isVisible() and box.text() == job.error
    box.close()


def test_dialog_cancel_keeps_the_existing_file(qtbot, tmp_path, save_as):
    from PySide6.QtWidgets import QPushButton

    from ui.export.export_dialog import run_export

    store = big_store(100_000)
    target = tmp_path / "keep.jsonl"
    target.write_text("previous\n")
    save_as["path"] = str(target)
    messages = []
    job = run_export(None, store, store.matching(Filter()), "x.jsonl", status=messages.append)
    seen = []
    job.progressed.connect(lambda done, total: seen.append(done))
    qtbot.waitUntil(lambda: any(seen), timeout=10_000)
    job._progress.findChild(QPushButton).click()  # the Cancel button
    qtbot.waitUntil(lambda: job.done, timeout=10_000)
    assert job.cancelled and messages == ["Export cancelled: keep.jsonl was not written."]
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jsonl"]


def test_gui_stays_responsive_while_rows_keep_arriving(qtbot, tmp_path, save_as):
    """A 200k-row export: a 10 ms timer keeps firing, and rows appended (and trimmed) meanwhile
    neither crash the export nor change what it writes."""
    from PySide6.QtCore import QTimer

    from ui.export.export_dialog import run_export

    n = 200_000
    store = big_store(n, max_rows=n)
    store.trim_chunk = 5_000
    reference = {}  # id -> the row as it was when the export started
    positions = store.matching(Filter())
    save_as["path"] = str(tmp_path / "big.csv")
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    arriving = columns_from_rows([make_row(i) for i in range(1_000)])
    next_id = [10_000_000]

    def receive():  # what the window does when a batch arrives: append, trim the oldest
        store.append_columns(arriving | {"id": list(range(next_id[0], next_id[0] + 1_000))})
        next_id[0] += 1_000

    feeder = QTimer()
    feeder.timeout.connect(receive)
    for pos in range(store.base, store.end, 997):
        reference[store.row(pos)["id"]] = pos
    want = {o["id"]: o for o in expected(store, list(reference.values()))}

    started = time.perf_counter()
    job = run_export(None, store, positions, "big.csv", status=lambda m: None)
    assert job._progress.labelText() == "Exporting 200,000 rows…"
    feeder.start(20)
    qtbot.waitUntil(lambda: job.done, timeout=120_000)
    elapsed = time.perf_counter() - started
    feeder.stop()
    timer.stop()

    assert job.error is None and store.base > 0  # rows were trimmed during the export
    header, rows = read_csv(tmp_path / "big.csv")
    assert job.written == len(rows) and job.written + job.skipped == n
    ids = [int(r[1]) for r in rows]
    assert ids == sorted(set(ids)) and ids[-1] == n - 1  # in order, none twice, up to the last one
    by_id = dict(zip(ids, rows, strict=True))
    for row_id, obj in want.items():
        if row_id in by_id:  # not skipped: exactly the row as it was
            assert by_id[row_id] == as_csv_fields(obj)
    gaps = [b - a for a, b in pairwise(ticks)]
    assert len(ticks) > elapsed / 0.010 * 0.3, (len(ticks), elapsed)
    assert max(gaps) < 0.5, max(gaps)


def test_dialog_reports_rows_trimmed_before_they_were_copied(qtbot, tmp_path, save_as, monkeypatch):
    import ui.export.export_dialog as dialog

    monkeypatch.setattr(dialog, "AHEAD", 2)  # copy only two batches (2 x 100 rows) up front
    store = build_store(10_000)
    positions = store.matching(Filter())
    before = expected(store, range(200))
    save_as["path"] = str(tmp_path / "t.jsonl")
    messages = []
    job = dialog.run_export(None, store, positions, "t.jsonl", status=messages.append)
    store.set_max_rows(1000)  # the window drops all but the newest 1000 rows meanwhile
    assert store.base == 9000
    qtbot.waitUntil(lambda: job.done, timeout=10_000)
    assert (job.written, job.skipped) == (1200, 8800)
    assert read_jsonl(tmp_path / "t.jsonl") == before + expected(store, range(9000, 10_000))
    assert messages == [
        f"Exported 1,200 rows to {tmp_path / 't.jsonl'} (8,800 rows had already left the window, which keeps "
        "only the newest, and were skipped)"
    ]


def test_dialog_status_goes_to_the_main_window_status_bar(qtbot, tmp_path, save_as):
    from PySide6.QtWidgets import QMainWindow

    from ui.export.export_dialog import run_export

    window = QMainWindow()
    qtbot.addWidget(window)
    save_as["path"] = str(tmp_path / "w.csv")
    job = run_export(window, build_store(50), range(50), "w.csv")
    qtbot.waitUntil(lambda: job.done, timeout=10_000)
    assert window.statusBar().currentMessage() == f"Exported 50 rows to {tmp_path / 'w.csv'}"
