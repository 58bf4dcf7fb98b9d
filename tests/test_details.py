"""Gateway receptions, the details pane and the radio charts, offscreen with the platforms' samples."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtWidgets import QTreeWidgetItemIterator

from app.platforms.tektelic import TektelicPlatform
from app.platforms.thingpark import ThingParkPlatform
from app.platforms.tts import parse_tts_message
from app.reception import gateway_receptions
from app.store import ROW_FIELDS, EventStore
from ui.workspace.charts import PLACEHOLDER_TEXT, RadioCharts, device_series, series_from_store
from ui.workspace.details_pane import (
    EMPTY_TEXT,
    HEX_LIMIT,
    RENDER_LIMIT,
    TREE_LIMIT,
    DetailsPane,
    format_body,
    hex_dump,
    property_lines,
    reception_time_text,
)

SAMPLES = Path(__file__).parent / "samples"
TTS_TOPIC = "v3/app1@tenant1/devices/dev1/up"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


@dataclass(frozen=True)
class Raw:
    """Duck-typed like app.history.RawRecord."""

    topic: str
    payload: bytes
    properties: dict | None = None
    received_at: str | None = None
    correlation_ids: tuple[str, ...] = ()


# ----- reception tables -----------------------------------------------------------------------


def tts_uplink_three_gateways() -> dict:
    """tts_up_1.json with two more gateways, the way newer servers write them."""
    doc = json.loads(sample("tts_up_1.json"))
    up = doc["uplink_message"]
    up["rx_metadata"] += [
        {
            "gateway_ids": {"gateway_id": "kerlink-roof", "eui": "7276FF0039030B12"},
            "time": "2019-01-29T13:02:34.982071234Z",
            "channel_rssi": -97,  # no rssi: channel_rssi is the fallback
            "snr": "-4.25",  # a number as a string
            "channel_index": 5,
            "antenna_index": 1,
            "location": {"latitude": 52.3731, "longitude": 4.8922, "altitude": 12},
        },
        {
            "gateway_ids": {"eui": "b827ebfffe6c279d"},  # no gateway id: the EUI
            "rssi": -112.5,
            "snr": -9.5,
            "channel_index": 5,
            "location": {"latitude": 0, "longitude": 0},  # no GPS fix
        },
    ]
    up["decoded_payload"] = {
        "temperature": 21.4,
        "battery": {"voltage": 3.61, "low": False},
        "samples": [20.9, 21.1, 21.4],
        "label": "Temperature = 0.0",
    }
    return doc


def test_tts_sample_reception():
    rows = gateway_receptions("tts", sample("tts_up_1.json"))
    assert rows == [
        {
            "gateway_id": "eui-0242020000247803",
            "rssi": -35.0,
            "snr": 5.0,
            "channel": 2,  # the sample's one gateway: settings.gateway_channel_index
            "time": "2019-01-29T13:02:34.981Z",
        }
    ]


def test_tts_three_gateways_sorted_best_rssi_first_and_agree_with_the_parser():
    body = orjson.dumps(tts_uplink_three_gateways())
    rows = gateway_receptions("tts", body)
    assert [r["gateway_id"] for r in rows] == ["eui-0242020000247803", "kerlink-roof", "B827EBFFFE6C279D"]
    assert [r["rssi"] for r in rows] == [-35.0, -97.0, -112.5]
    assert rows[1]["snr"] == -4.25 and rows[1]["channel"] == 5 and rows[1]["antenna"] == 1
    assert (rows[1]["lat"], rows[1]["lon"]) == (52.3731, 4.8922)
    assert "lat" not in rows[2] and "antenna" not in rows[0]  # 0,0 is no location; no antenna_index: unknown
    assert rows[0]["channel"] == 0  # several gateways: a missing channel_index is TTS's zero
    (event,) = parse_tts_message(TTS_TOPIC, body)
    assert (event.gateway_id, event.rssi, event.snr, event.gateways) == ("eui-0242020000247803", -35.0, 5.0, 3)


def test_tts_packet_broker_and_non_uplinks():
    doc = {
        "uplink_message": {
            "rx_metadata": [
                {
                    "gateway_ids": {"gateway_id": "packetbroker"},
                    "packet_broker": {"forwarder_net_id": "000013", "forwarder_gateway_id": "ttig-basement"},
                    "rssi": -101,
                }
            ]
        }
    }
    (row,) = gateway_receptions("tts", orjson.dumps(doc))
    assert row["gateway_id"] == "packetbroker: ttig-basement" and row["snr"] == 0.0  # zero is left out
    assert gateway_receptions("tts", sample("tts_join_1.json")) == []
    assert gateway_receptions("tts", sample("tts_down_ack_1.json")) == []


def test_thingpark_sample_reception():
    rows = gateway_receptions("thingpark", sample("thingpark_uplink_1.json"))
    assert rows == [
        {
            "gateway_id": "004A18E3",
            "rssi": -80.0,
            "snr": 7.0,
            "channel": "LC6",
            "time": "2018-10-03T15:38:46.882+02:00",
            "antenna": 0,
            "lat": 45.851032,
            "lon": 1.26623,
        }
    ]


def test_thingpark_several_lrrs_and_the_best_gateway_fallback():
    doc = json.loads(sample("thingpark_uplink_1.json"))
    body = doc["DevEUI_uplink"]
    body["Lrrs"]["Lrr"] += [
        {"Lrrid": "FF0181C2", "Chain": "1", "LrrRSSI": "-62.000000", "LrrSNR": "9.250000", "LrrESP": "-62.5"},
        {"Lrrid": "00000BAD", "LrrRSSI": "not a number", "LrrSNR": 1},
        "junk",
    ]
    rows = gateway_receptions("thingpark", orjson.dumps(doc))
    assert [(r["gateway_id"], r["rssi"], r["snr"]) for r in rows] == [
        ("FF0181C2", -62.0, 9.25),
        ("004A18E3", -80.0, 7.0),
        ("00000BAD", None, 1.0),  # unknown RSSI last
    ]
    assert rows[0]["antenna"] == 1 and "lat" not in rows[0]  # LrrLAT/LON belong to the best Lrrid only
    assert all(r["channel"] == "LC6" for r in rows)

    del body["Lrrs"]  # no per-gateway list: the best gateway's own fields
    (only,) = gateway_receptions("thingpark", orjson.dumps(doc))
    assert (only["gateway_id"], only["rssi"], only["snr"], only["lat"]) == ("004A18E3", -80.0, 7.0, 45.851032)
    (rootless,) = gateway_receptions("thingpark", orjson.dumps(body))  # sendMetadata: no DevEUI_uplink root
    assert rootless == only
    assert gateway_receptions("thingpark", sample("thingpark_downlink_sent_1.json")) == []
    assert gateway_receptions("thingpark", sample("thingpark_uplink_decoded_only_1.json")) == []


def tektelic_uplink() -> dict:
    """A pass-through converter v2 message around the documented tektelicMetadata (whose stored
    copy is a truncated JS-commented fragment, so it is rebuilt here from its values)."""
    fragment = sample("tektelic_metadata_fragment_1.txt").decode()
    for documented in ('"gwEui": "647FDAFFFE00CCCB"', '"rssi": -100', '"snr": 9.5', '"antennaId": 0', '"channel": 0'):
        assert documented in fragment
    assert "tektelicMetadata" in sample("tektelic_passthrough_v2_uplink_shape.txt").decode()
    return {
        "data": {"bytes": [1, 2, 3, 250]},
        "errors": [],
        "warnings": [],
        "tektelicMetadata": {
            "applicationId": "f8c1b0e0-da68-11ec-9f49-f7efa75f53dd",
            "deviceEui": "647FDA0300004AAB",
            "deviceName": "Device Name",
            "fPort": 10,
            "fCntUp": 142,
            "recvTime": 1345291148,
            "dataRate": 7,
            "rfRegion": "US902",
            "gatewayCount": 2,
            "gatewayRxInfo": [
                {
                    "gwEui": "647FDAFFFE00CCCB",
                    "antennaId": 0,
                    "rssi": -100,
                    "snr": 9.5,
                    "lat": 123.0,  # the documentation's placeholder: not a latitude
                    "lon": 123.0,
                    "alt": 10.0,
                    "gatewayName": "Gateway Name",
                    "channel": 0,
                },
                {"gwEui": "647fdafffe00aaaa", "rssi": "-71", "snr": "3", "channel": "7", "lat": 45.5, "lon": -73.6},
            ],
        },
    }


def test_tektelic_reception_from_the_documented_metadata():
    body = orjson.dumps(tektelic_uplink())
    rows = gateway_receptions("tektelic", body)
    assert rows == [
        {
            "gateway_id": "647FDAFFFE00AAAA",
            "rssi": -71.0,
            "snr": 3.0,
            "channel": 7,
            "time": "2012-08-18T11:59:08Z",
            "lat": 45.5,
            "lon": -73.6,
        },
        {
            "gateway_id": "647FDAFFFE00CCCB",
            "rssi": -100.0,
            "snr": 9.5,
            "channel": 0,
            "time": "2012-08-18T11:59:08Z",
            "antenna": 0,
            "name": "Gateway Name",
        },
    ]
    (event,) = TektelicPlatform().parse("tektelic/uplink", body)
    assert (event.gateway_id, event.rssi, event.gateways) == (rows[0]["gateway_id"], rows[0]["rssi"], 2)


def test_platforms_without_gateway_data_and_the_thingpark_parser_agree():
    (event,) = ThingParkPlatform().parse("mqtt/things/0018B20000000B20/uplink", sample("thingpark_uplink_1.json"))
    rows = gateway_receptions("thingpark", sample("thingpark_uplink_1.json"))
    assert (event.gateway_id, event.rssi, event.snr) == (rows[0]["gateway_id"], rows[0]["rssi"], rows[0]["snr"])
    for platform, name in (("akenza", "akenza_uplink_1.json"), ("drogue", "drogue_structured_1.json")):
        assert gateway_receptions(platform, sample(name)) == []
    assert gateway_receptions("generic", sample("tts_up_1.json")) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"null",
        b"[]",
        b"not json",
        b"\xff\xfe",
        b'{"uplink_message": 5}',
        b'{"uplink_message": {"rx_metadata": {"rssi": -1}}}',
        b'{"uplink_message": {"rx_metadata": [null, 1, "x", [], {"gateway_ids": 7, "rssi": true}]}}',
        b'{"DevEUI_uplink": {"Lrrs": {"Lrr": "x"}}}',
        b'{"DevEUI_uplink": {"Lrrs": [1]}}',
        b'{"tektelicMetadata": {"gatewayRxInfo": [{"rssi": "1e999", "lat": "nan", "recvTime": []}]}}',
        None,
        12,
        "text",
        bytearray(b"{}"),
        memoryview(b"[1]"),
    ],
)
def test_bad_input_never_raises(payload):
    for platform in ("tts", "thingpark", "tektelic", "generic", None, 5):
        rows = gateway_receptions(platform, payload)
        assert isinstance(rows, list)
        for row in rows:
            assert {"gateway_id", "rssi", "snr", "channel", "time"} <= set(row)
            assert row["rssi"] is None or math.isfinite(row["rssi"])


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_field = st.sampled_from(
    [
        "gateway_ids",
        "gateway_id",
        "eui",
        "rssi",
        "channel_rssi",
        "snr",
        "channel_index",
        "antenna_index",
        "time",
        "location",
        "latitude",
        "longitude",
        "packet_broker",
        "Lrrid",
        "LrrRSSI",
        "LrrSNR",
        "Chain",
        "gwEui",
        "gatewayName",
        "antennaId",
        "lat",
        "lon",
        "channel",
    ]
)
_entry = st.dictionaries(_field, _json | st.dictionaries(_field, _json, max_size=3), max_size=8)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_entry | _json, max_size=5), extra=st.dictionaries(_field, _json, max_size=4))
def test_fuzzed_bodies_never_raise(entries, extra):
    bodies = {
        "tts": {"uplink_message": {"rx_metadata": entries, "settings": extra}},
        "thingpark": {"DevEUI_uplink": {"Lrrs": {"Lrr": entries}, **extra}},
        "tektelic": {"tektelicMetadata": {"gatewayRxInfo": entries, **extra}},
    }
    for platform, doc in bodies.items():
        rows = gateway_receptions(platform, json.dumps(doc).encode())  # stdlib: integers beyond 64 bits too
        assert len(rows) <= len(entries) + 1
        rssis = [r["rssi"] for r in rows if r["rssi"] is not None]
        assert rssis == sorted(rssis, reverse=True)


# ----- the details pane -----------------------------------------------------------------------


def row_of(event, ts: float = 1_548_766_954.981) -> tuple:
    """An Event as a store row (ROW_FIELDS order), as the engine builds them."""
    values = {
        "id": 1,
        "ts": ts,
        "payload": bytes.fromhex(event.payload_hex) if event.payload_hex else None,
        "decoded": orjson.dumps(event.decoded) if event.decoded is not None else None,
    }
    return tuple(values[name] if name in values else getattr(event, name) for name in ROW_FIELDS)


def store_row(event) -> dict:
    store = EventStore()
    store.append_rows([row_of(event)])
    return store.row(store.base)


def tree_items(tree) -> list:
    items, it = [], QTreeWidgetItemIterator(tree)
    while it.value():
        items.append(it.value())
        it += 1
    return items


@pytest.fixture
def pane(qtbot):
    widget = DetailsPane()
    qtbot.addWidget(widget)
    widget.resize(760, 520)
    widget.show()
    return widget


def tts_row_and_raw():
    doc = tts_uplink_three_gateways()
    body = orjson.dumps(doc)
    (event,) = parse_tts_message(TTS_TOPIC, body)
    raw = Raw(
        TTS_TOPIC,
        body,
        {"content_type": "application/json", "user_properties": [["source", "tts"]], "correlation_data": b"\x01\x02"},
        "2019-01-29T13:02:35.012Z",
        tuple(doc["correlation_ids"]),
    )
    return store_row(event), raw


def test_details_of_a_tts_uplink(pane):
    row, raw = tts_row_and_raw()
    pane.show_event(row, raw)
    assert pane.stack.currentIndex() == 1
    header = pane.header.text()
    for part in ("uplink", "dev1", "DevEUI 4200000000000000", "fPort 15", "fCnt 0"):
        assert part in header
    for part in ("The Things Stack", "SF7 BW125", "868.5 MHz", "RSSI -35 dBm", "3 gateways"):
        assert part in pane.subheader.text()
    assert pane.error.isHidden()

    # Message: topic, indented JSON, correlation ids, MQTT 5 properties.
    assert pane.tabs.tabText(0) == "Message" and pane.tabs.currentIndex() == 0
    assert pane.topic_label.text() == TTS_TOPIC
    body = pane.body_view.toPlainText()
    assert body.startswith("{\n") and '\n  "uplink_message": {\n' in body
    assert "as:up:01D2CV8HNGJ57G25BW0FCZNY07" in pane.correlation_label.text()
    props = pane.properties_label.text().splitlines()
    assert props == ["content type: application/json", "user property: source = tts", "correlation data: 0x0102"]
    assert pane.body_note.text().startswith("JSON, ")

    # Payload: the classic hex dump, text and base64.
    pane.tabs.setCurrentIndex(1)
    lines = pane.hex_view.toPlainText().splitlines()
    assert lines == [
        "0000  54 65 6d 70 65 72 61 74  75 72 65 20 3d 20 30 2e  |Temperature = 0.|",
        "0010  30                                                |0|",
    ]
    assert pane.payload_text.toPlainText() == "Temperature = 0.0"
    assert pane.payload_base64.toPlainText() == "VGVtcGVyYXR1cmUgPSAwLjA="
    assert pane.payload_hex.toPlainText() == "54656D7065726174757265203D20302E30"
    assert "17 bytes on fPort 15" in pane.payload_summary.text()

    # Decoded: 4 keys, battery's 2, samples' 3 as [i].
    pane.tabs.setCurrentIndex(2)
    items = tree_items(pane.decoded_tree)
    assert len(items) == 9
    keys = {item.text(0): item.text(1) for item in items}
    assert keys["battery"] == "{2 keys}" and keys["samples"] == "[3 items]"
    assert keys["[1]"] == "21.1" and keys["low"] == "false" and keys["label"] == '"Temperature = 0.0"'

    # Gateways: three rows, best RSSI first.
    pane.tabs.setCurrentIndex(3)
    table = pane.gateway_table
    assert not pane.gateways_page.showing_message
    assert table.rowCount() == 3
    column = {table.horizontalHeaderItem(c).text(): c for c in range(table.columnCount())}
    assert [table.item(r, column["Gateway"]).text() for r in range(3)] == [
        "eui-0242020000247803",
        "kerlink-roof",
        "B827EBFFFE6C279D",
    ]
    assert [table.item(r, column["RSSI (dBm)"]).text() for r in range(3)] == ["-35", "-97", "-112.5"]
    assert table.item(1, column["Location"]).text() == "52.37310, 4.89220"
    assert not table.isColumnHidden(column["Antenna"]) and table.isColumnHidden(column["Name"])
    assert "3 gateways" in pane.gateways_summary.text()


def test_tabs_render_when_shown(pane):
    row, raw = tts_row_and_raw()
    pane.tabs.setCurrentIndex(0)
    pane.show_event(row, raw)
    assert pane.decoded_tree.topLevelItemCount() == 0 and pane.gateway_table.rowCount() == 0
    pane.tabs.setCurrentIndex(2)
    assert pane.decoded_tree.topLevelItemCount() == 4
    pane.tabs.setCurrentIndex(3)
    assert pane.gateway_table.rowCount() == 3


def test_details_without_raw_and_with_an_error(pane):
    row, _raw = tts_row_and_raw()
    row = dict(row, error="Decoder warnings: battery low")
    pane.show_event(row, None)
    pane.render_all()
    assert pane.error.isVisibleTo(pane) and "battery low" in pane.error.text()
    assert pane.message_page.showing_message and "not available" in pane.message_page.message.text()
    assert pane.gateways_page.showing_message and "not available" in pane.gateways_page.message.text()
    assert not pane.payload_page.showing_message and pane.hex_view.toPlainText().startswith("0000  54 65")
    assert pane.decoded_tree.topLevelItemCount() == 4

    # A join: no payload, nothing decoded, no gateways in the body.
    (join,) = parse_tts_message("v3/app1/devices/dev1/join", sample("tts_join_1.json"))
    pane.show_event(store_row(join), Raw("v3/app1/devices/dev1/join", sample("tts_join_1.json")))
    pane.render_all()
    assert pane.error.isHidden()
    assert pane.payload_page.showing_message and pane.decoded_page.showing_message
    assert pane.gateways_page.showing_message and "no per-gateway" in pane.gateways_page.message.text()
    assert not pane.message_page.showing_message


def test_empty_state(pane):
    pane.show_event(None)
    assert pane.stack.currentIndex() == 0 and pane.empty.text() == EMPTY_TEXT == "Select a row to see its details."
    row, raw = tts_row_and_raw()
    pane.show_event(row, raw)
    pane.show_event(None)
    assert pane.stack.currentIndex() == 0 and pane.body_view.toPlainText() == ""


def test_huge_bodies_render_bounded(pane):
    row, _raw = tts_row_and_raw()
    cases = {
        "json": orjson.dumps({"values": list(range(600_000)), "blob": "x" * 1_000_000}),  # ~5 MB
        "text": ("line of text\n" * 400_000).encode(),  # ~5 MB
        "binary": bytes(range(256)) * 20_000,  # ~5 MB
    }
    for kind, body in cases.items():
        started = time.perf_counter()
        pane.show_event(row, Raw("big/" + kind, body))
        pane.grab()
        elapsed = time.perf_counter() - started
        shown = pane.body_view.toPlainText()
        assert elapsed < 2.0, (kind, elapsed)
        assert len(shown) <= RENDER_LIMIT + 2, kind
        assert "Showing the first" in pane.body_note.text(), kind
        assert pane.body_note.text().startswith({"json": "JSON", "text": "Text", "binary": "Binary"}[kind])
    assert shown.splitlines()[1].startswith("00000010  10 11 12")  # 8-digit offsets past 64 KB

    big_payload = dict(row, payload=bytes(300_000), decoded=orjson.dumps({"v": list(range(100_000))}))
    started = time.perf_counter()
    pane.show_event(big_payload, None)
    pane.render_all()
    assert time.perf_counter() - started < 2.0
    assert len(pane.hex_view.toPlainText().splitlines()) == HEX_LIMIT // 16
    assert "Showing the first 64 KB" in pane.payload_summary.text()
    items = tree_items(pane.decoded_tree)
    assert TREE_LIMIT <= len(items) <= TREE_LIMIT + 2
    assert pane.decoded_tree.topLevelItem(pane.decoded_tree.topLevelItemCount() - 1).text(0).startswith("… only")


def test_formatting_helpers():
    assert hex_dump(b"") == ""
    assert hex_dump(b"AB\x00") == "0000  41 42 00" + " " * 40 + "  |AB.|"
    assert len(hex_dump(bytes(0x10010), None).splitlines()[-1].split()[0]) == 8  # long dumps: 8-digit offsets
    assert format_body(b"") == ("", "empty", "")
    assert format_body(b'{"a":[1,2]}')[:2] == ('{\n  "a": [\n    1,\n    2\n  ]\n}', "json")
    assert format_body(b'{"big": 123456789012345678901234567890}')[0] == '{\n  "big": 123456789012345678901234567890\n}'
    assert format_body("héllo wörld".encode())[:2] == ("héllo wörld", "text")
    assert format_body(b"\x00\x01")[1] == "binary"
    text, kind, note = format_body(("é" * 100).encode(), limit=64)  # cut inside a multi-byte character
    assert kind == "text" and text.startswith("é" * 63) and "Showing the first" in note
    assert property_lines(None) == []
    assert property_lines({"user_properties": [["a", "b"]] * 60}, limit=50)[-1] == "… 10 more"
    assert reception_time_text("2019-01-29T13:02:34.982071234Z").endswith(":02:34.982")
    assert reception_time_text("not a time") == "not a time"
    assert reception_time_text(None) == ""


# ----- the radio charts -----------------------------------------------------------------------


@pytest.fixture
def charts(qtbot):
    widget = RadioCharts()
    qtbot.addWidget(widget)
    widget.resize(900, 560)
    widget.show()
    return widget


def points(curve) -> int:
    x, _y = curve.getOriginalDataset()  # getData() is what is drawn: clipped and downsampled
    return 0 if x is None else len(x)


def test_placeholder_until_devices_are_set(charts):
    assert charts.stack.currentIndex() == 0 and charts.placeholder.text() == PLACEHOLDER_TEXT
    charts.set_devices({"a": ([1.0, 2.0], [-90, -91], [5, 6], [7, 7])})
    assert charts.stack.currentIndex() == 1 and charts.devices() == ["a"]
    charts.set_devices({})
    assert charts.stack.currentIndex() == 0 and charts.devices() == []


def test_100k_points_render_quickly(charts):
    rng = np.random.default_rng(7)
    n = 100_000
    ts = 1_717_000_000 + np.sort(rng.uniform(0, 30 * 86400, n))
    rssi = -100 + rng.normal(0, 5, n)
    rssi[::10] = np.nan  # missing values are left out
    snr = rng.normal(0, 3, n)
    sf = rng.integers(7, 13, n).astype(float)
    started = time.perf_counter()
    charts.set_devices({"dev-a": (ts, rssi, snr, sf), "dev-b": (ts + 1, rssi - 10, snr, sf)})
    image = charts.grab()
    elapsed = time.perf_counter() - started
    assert not image.isNull()
    assert elapsed < 3.0, elapsed
    assert points(charts.curve("dev-a", "rssi")) == n - n // 10
    assert points(charts.curve("dev-a", "snr")) == n
    x_lo, x_hi = charts.plots["rssi"].viewRange()[0]
    assert x_lo <= ts[0] and x_hi >= ts[-1]  # the whole time range is in view
    assert len(charts.legend.items) == 2


def test_append_updates_curves_within_a_tenth_of_a_second(charts, qtbot):
    charts.set_devices({"a": (np.array([100.0, 200.0]), np.array([-90.0, -91.0]), [5.0, 6.0], [7.0, 8.0])})
    rssi, sf = charts.curve("a", "rssi"), charts.curve("a", "sf")
    assert points(rssi) == 2
    assert charts.append("a", [300.0, 400.0], [-92.0, None], [4.0, float("nan")], [9, 9]) is True
    assert points(rssi) == 2  # throttled: drawn on the next tick
    qtbot.waitUntil(lambda: points(rssi) == 3, timeout=1000)
    assert points(sf) == 4 and points(charts.curve("a", "snr")) == 3
    assert list(rssi.getOriginalDataset()[1]) == [-90.0, -91.0, -92.0]
    assert charts.append("not charted", [1.0], [1.0], [1.0], [7]) is False

    # Single values, many times: buffers grow geometrically.
    for i in range(5000):
        charts.append("a", 500.0 + i, -80.0, 1.0, 7)
    series = charts._series["a"]
    assert series.n == 5004 and series.buf.shape[1] < 2 * 5004
    charts.flush()
    assert points(rssi) == 5003 and charts.point_count("a") == 5004

    # Out of order: sorted by time for clipping.
    charts.append("a", [150.0], [-50.0], [0.0], [12])
    charts.flush()
    x, y = rssi.getOriginalDataset()
    assert np.all(np.diff(x) >= 0) and y[1] == -50.0


def test_follow_live_keeps_the_last_minutes_in_view(charts):
    t0 = 1_717_000_000.0
    ts = t0 + np.arange(0, 3600, 60.0)
    charts.set_devices({"a": (ts, np.full(len(ts), -90.0), np.zeros(len(ts)), np.full(len(ts), 7.0))})
    charts.window_box.setCurrentIndex(1)  # last 5 minutes
    assert charts.window_seconds() == 300 and charts.follow.isChecked()
    lo, hi = charts.plots["snr"].viewRange()[0]  # linked: every plot shows the same time
    assert lo == pytest.approx(ts[-1] - 300, abs=2) and hi >= ts[-1]
    charts.append("a", [t0 + 7200], [-95.0], [1.0], [8])
    charts.flush()
    lo, hi = charts.plots["rssi"].viewRange()[0]
    assert lo == pytest.approx(t0 + 7200 - 300, abs=2) and hi >= t0 + 7200

    # A mouse zoom stops following; "Show all" zooms out to the data.
    charts.plots["rssi"].vb.sigRangeChangedManually.emit([True, False])
    assert not charts.follow.isChecked()
    charts.append("a", [t0 + 9000], [-95.0], [1.0], [8])
    charts.flush()
    assert charts.plots["rssi"].viewRange()[0][1] < t0 + 9000
    charts.show_all()
    lo, hi = charts.plots["rssi"].viewRange()[0]
    assert lo <= t0 and hi >= t0 + 9000
    charts.window_box.setCurrentIndex(3)  # choosing a window follows again
    assert charts.follow.isChecked() and charts.plots["rssi"].viewRange()[0][0] == pytest.approx(
        t0 + 9000 - 3600, abs=5
    )


def test_series_from_store_maps_missing_values_to_nan():
    store = EventStore(max_rows=4, trim_chunk=1)

    def row(i, rssi, snr, sf, dev="A"):
        values = dict.fromkeys(ROW_FIELDS)
        values.update(ts=1000.0 + i, platform="tts", kind="uplink", dev_eui=dev, rssi=rssi, snr=snr)
        values["spreading_factor"] = sf
        return tuple(values[name] for name in ROW_FIELDS)

    store.append_rows([row(0, -1.0, 1.0, 7), row(1, -2.0, None, None, "B"), row(2, None, 3.0, 12)])
    ts, rssi, snr, sf = series_from_store(store, store.device_index["A"])
    assert list(ts) == [1000.0, 1002.0] and list(sf) == [7.0, 12.0]
    assert rssi[0] == -1.0 and math.isnan(rssi[1]) and snr[1] == 3.0
    ts, rssi, snr, sf = series_from_store(store, [1])
    assert list(ts) == [1001.0] and math.isnan(snr[0]) and math.isnan(sf[0])
    assert all(a.dtype == np.float64 for a in (ts, rssi, snr, sf))

    store.append_rows([row(3, -4.0, 4.0, 9), row(4, -5.0, 5.0, 10)])  # the columns still grow: no buffer export left
    assert store.base == 1
    ts, *_ = series_from_store(store, range(0, 5))  # position 0 was trimmed
    assert list(ts) == [1001.0, 1002.0, 1003.0, 1004.0]
    ts, *_ = series_from_store(store, np.array([4, 2]))
    assert list(ts) == [1004.0, 1002.0]
    empty = series_from_store(EventStore(), [])
    assert all(len(a) == 0 for a in empty)
    series = device_series(store, ["A", "B", "missing"])
    assert set(series) == {"A", "B"} and list(series["A"][0]) == [1002.0, 1003.0, 1004.0]


def test_charts_take_store_series(charts):
    store = EventStore()
    rows = []
    for i in range(1000):
        values = dict.fromkeys(ROW_FIELDS)
        values.update(ts=1_717_000_000.0 + 60 * i, platform="tts", kind="uplink", dev_eui=f"DEV{i % 3}")
        values.update(rssi=-80.0 - i % 40, snr=float(i % 10), spreading_factor=None if i % 7 == 0 else 7 + i % 6)
        rows.append(tuple(values[name] for name in ROW_FIELDS))
    store.append_rows(rows)
    charts.set_devices(device_series(store, store.devices()), labels={"DEV0": "lobby"})
    assert charts.devices() == ["DEV0", "DEV1", "DEV2"]
    assert points(charts.curve("DEV0", "sf")) == sum(1 for i in range(0, 1000, 3) if i % 7)
    assert "3 devices" in charts.summary.text()
    assert charts.legend.items[0][1].text == "lobby"


def test_malformed_rows_do_not_break_the_pane(pane):
    row = {"platform": "tts", "kind": "uplink", "payload": "not bytes", "decoded": b"{broken", "ts": float("nan")}
    pane.show_event(row, Raw("t", "a text body", properties={"odd": object()}))
    pane.render_all()
    assert pane.header.text() == "uplink" and "The Things Stack" in pane.subheader.text()
    assert pane.body_view.toPlainText() == "a text body"
    assert pane.payload_page.showing_message and "could not be shown" in pane.payload_page.message.text()
    assert [item.text(1) for item in tree_items(pane.decoded_tree)] == ['"{broken"']


def test_hidden_charts_draw_when_shown(qtbot):
    charts = RadioCharts()
    qtbot.addWidget(charts)
    charts.set_devices({"a": ([1.0, 2.0], [-90.0, -91.0], [1.0, 2.0], [7, 7])})
    assert points(charts.curve("a", "rssi")) == 0  # hidden: nothing drawn yet
    charts.show()
    assert points(charts.curve("a", "rssi")) == 2
