"""The Things Stack traffic for demos, benchmarks and tests, shaped like the real messages
(tests/samples/tts_up_1.json, tts_join_1.json, tts_down_ack_1.json).

`tts_uplink()` is the quick single-message maker the benchmarks and window tests use;
`TtsSimulator` puts the shared fleet (app/simulate/fleet.py) on TTS topics and answers downlinks.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import random
import struct

import orjson

from app.simulate.base import Answer, Message, Simulator, malformed_body
from app.simulate.fleet import JOIN, MALFORMED, UPLINK, Device, Fleet, Frame, iso_z

APP_ID = "uplink-demo"
TENANT = "ttn"


def device_id(i: int) -> str:
    return f"env-sensor-{i:03d}"


def dev_eui(i: int) -> str:
    return f"70B3D57ED005{i:04X}"


def gateway(i: int) -> tuple[str, str]:
    eui = f"B827EBFFFE{i:06X}"
    return f"eui-{eui.lower()}", eui


def tts_uplink(
    device: int, f_cnt: int, *, gateways: int = 2, rnd: random.Random | None = None, now: dt.datetime | None = None
) -> bytes:
    """One TTS v3 uplink message body (~850 bytes with two gateways, +150 bytes a gateway)."""
    rnd = rnd or random.Random(device * 100_003 + f_cnt)
    now = now or dt.datetime.now(dt.UTC)
    temperature = 18 + 6 * rnd.random() + device % 5
    humidity = 35 + rnd.randrange(30)
    battery = 3.0 + (device % 7) / 10
    frame = struct.pack(">hBH", int(temperature * 100), humidity, int(battery * 1000))
    sf = 7 + (device % 6)
    stamp = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    rx = []
    for g in range(gateways):
        gid, geui = gateway((device + g) % 20)
        rx.append(
            {
                "gateway_ids": {"gateway_id": gid, "eui": geui},
                "time": stamp,
                "timestamp": rnd.randrange(2**32),
                "rssi": -60 - rnd.randrange(60) - 5 * g,
                "snr": round(rnd.uniform(-12, 10), 1),
                "uplink_token": base64.b64encode(rnd.randbytes(12)).decode(),
                "channel_index": rnd.randrange(8),
            }
        )
    body = {
        "end_device_ids": {
            "device_id": device_id(device),
            "application_ids": {"application_id": APP_ID},
            "dev_eui": dev_eui(device),
            "join_eui": "70B3D57ED0000000",
            "dev_addr": f"260B{device:04X}",
        },
        "correlation_ids": [f"as:up:01H{rnd.randbytes(11).hex().upper()}"],
        "received_at": stamp,
        "uplink_message": {
            "session_key_id": base64.b64encode(rnd.randbytes(16)).decode(),
            "f_port": 2,
            "f_cnt": f_cnt,
            "frm_payload": base64.b64encode(frame).decode(),
            "decoded_payload": {"temperature": round(temperature, 2), "humidity": humidity, "battery": battery},
            "rx_metadata": rx,
            "settings": {
                "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": sf, "coding_rate": "4/5"}},
                "frequency": str(867100000 + 200000 * (f_cnt % 8)),
            },
            "consumed_airtime": "0.061696s",
        },
    }
    return orjson.dumps(body)


def tts_topic(device: int, event: str = "up") -> str:
    return f"v3/{APP_ID}@{TENANT}/devices/{device_id(device)}/{event}"


# ----- the fleet on The Things Stack's MQTT server --------------------------------------------


def _ulid(rnd: random.Random) -> str:
    """A ULID-like id as TTS writes in correlation ids (26 Crockford base32 characters)."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "01" + "".join(alphabet[rnd.randrange(32)] for _ in range(24))


class TtsSimulator(Simulator):
    """The Things Stack: uplinks and joins on v3/{app}@{tenant}/devices/{device}/up|join, and the
    Application Server's answers to a downlink pushed to …/down/push or …/down/replace: down/queued
    at once, down/sent when the next receive window comes, down/ack once a confirmed downlink is
    acknowledged by the device, each echoing the pushed correlation ids (an unconfirmed downlink gets
    no ack, as on TTS). A push with an FPort outside 1..223 gets down/failed."""

    platform = "tts"

    def __init__(self, fleet: Fleet, *, app: str = APP_ID, tenant: str = TENANT, **settings) -> None:
        super().__init__(fleet, **settings)
        self.app, self.tenant = app, tenant
        self.uid = f"{app}@{tenant}" if tenant else app

    def topic(self, device_id: str, event: str) -> str:
        return f"v3/{self.uid}/devices/{device_id}/{event}"

    def _ids(self, device: Device) -> dict:
        return {
            "device_id": device.device_id,
            "application_ids": {"application_id": self.app},
            "dev_eui": device.dev_eui,
            "join_eui": "70B3D57ED0000000",
            "dev_addr": device.dev_addr,
        }

    def _session_key(self, device: Device) -> str:
        return base64.b64encode(struct.pack(">16s", f"{device.dev_addr}{device.index:012d}".encode()[:16])).decode()

    def uplink_body(self, frame: Frame) -> dict:
        device = frame.device
        stamp = iso_z(frame.time)
        rx = []
        for reception in frame.receptions:
            item = {
                "gateway_ids": {"gateway_id": reception.gateway.gateway_id, "eui": reception.gateway.eui},
                "time": stamp,
                "timestamp": reception.timestamp,
                "rssi": reception.rssi,
                "channel_rssi": reception.rssi,
                "snr": reception.snr,
                "location": {
                    "latitude": reception.gateway.latitude,
                    "longitude": reception.gateway.longitude,
                    "source": "SOURCE_REGISTRY",
                },
                "uplink_token": base64.b64encode(struct.pack(">QI", frame.sequence, reception.timestamp)).decode(),
                "received_at": stamp,
            }
            if reception.channel:
                item["channel_index"] = reception.channel  # zero is left out, as TTS does
            rx.append(item)
        up: dict = {
            "session_key_id": self._session_key(device),
            "f_port": frame.f_port,
            "frm_payload": base64.b64encode(frame.payload).decode(),
            "decoded_payload": frame.decoded,
            "rx_metadata": rx,
            "settings": {
                "data_rate": {
                    "lora": {
                        "bandwidth": frame.bandwidth_hz,
                        "spreading_factor": frame.spreading_factor,
                        "coding_rate": "4/5",
                    }
                },
                "frequency": str(frame.frequency_hz),
            },
            "received_at": stamp,
            "consumed_airtime": f"{airtime_s(len(frame.payload), frame.spreading_factor):.6f}s",
            "network_ids": {"net_id": "000013", "tenant_id": self.tenant or "ttn", "cluster_id": "eu1"},
        }
        if frame.f_cnt:
            up["f_cnt"] = frame.f_cnt  # zero is left out
        if frame.confirmed:
            up["confirmed"] = True
        return {
            "end_device_ids": self._ids(device),
            "correlation_ids": [f"gs:uplink:{_ulid(self.rnd)}", f"as:up:{_ulid(self.rnd)}"],
            "received_at": stamp,
            "uplink_message": up,
        }

    def messages(self, frame: Frame) -> list[Message]:
        device = frame.device
        if frame.kind == MALFORMED:
            good = orjson.dumps(self.uplink_body(_stand_in(frame)))
            return [Message(self.topic(device.device_id, "up"), malformed_body(frame, good), kind=MALFORMED)]
        if frame.kind == JOIN:
            stamp = iso_z(frame.time)
            body = {
                "end_device_ids": self._ids(device),
                "correlation_ids": [f"as:up:{_ulid(self.rnd)}"],
                "received_at": stamp,
                "join_accept": {"session_key_id": self._session_key(device), "received_at": stamp},
            }
            return [Message(self.topic(device.device_id, "join"), orjson.dumps(body), kind=JOIN)]
        return [Message(self.topic(device.device_id, "up"), orjson.dumps(self.uplink_body(frame)))]

    def listen(self) -> list[str]:
        return [f"v3/{self.uid}/devices/+/down/push", f"v3/{self.uid}/devices/+/down/replace"]

    def answer(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Answer]:
        parts = topic.split("/")
        if len(parts) != 6 or parts[0] != "v3" or parts[1] != self.uid or parts[4] != "down":
            return []
        device = self.fleet.device_named(parts[3])
        try:
            items = orjson.loads(payload).get("downlinks")
        except (orjson.JSONDecodeError, AttributeError):
            return []
        if device is None or not isinstance(items, list):
            return []
        out: list[Answer] = []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            pushed = [c for c in item.get("correlation_ids") or [] if isinstance(c, str)]
            ids = [*pushed, f"as:downlink:{_ulid(self.answer_rnd)}"]
            downlink = {
                "session_key_id": self._session_key(device),
                "f_port": item.get("f_port"),
                "frm_payload": item.get("frm_payload")
                or base64.b64encode(orjson.dumps(item.get("decoded_payload") or {})).decode(),
                "priority": item.get("priority") or "NORMAL",
                "correlation_ids": ids,
            }
            if item.get("decoded_payload") is not None:
                downlink["decoded_payload"] = item["decoded_payload"]
            if item.get("confirmed"):
                downlink["confirmed"] = True
            f_port = item.get("f_port")
            step = 0.15 * n
            if not isinstance(f_port, int) or not 1 <= f_port <= 223:
                failed = {
                    "downlink": downlink,
                    "error": {
                        "namespace": "pkg/networkserver",
                        "name": "invalid_f_port",
                        "message_format": "FPort must be between 1 and 223",
                        "code": 3,
                    },
                }
                out.append(Answer(0.2 + step, self._event(device, "down/failed", "downlink_failed", failed, ids)))
                continue
            out.append(Answer(0.2 + step, self._event(device, "down/queued", "downlink_queued", downlink, ids)))
            sent = {**downlink, "f_cnt": device.f_cnt_down}
            device.f_cnt_down += 1
            out.append(Answer(1.2 + step, self._event(device, "down/sent", "downlink_sent", sent, ids)))
            if item.get("confirmed"):
                out.append(Answer(2.4 + step, self._event(device, "down/ack", "downlink_ack", sent, ids)))
        return out

    def _event(self, device: Device, suffix: str, key: str, body: dict, ids: list[str]) -> Message:
        doc = {
            "end_device_ids": self._ids(device),
            "correlation_ids": ids,
            "received_at": iso_z(dt.datetime.now(dt.UTC)),
            key: body,
        }
        return Message(self.topic(device.device_id, suffix), orjson.dumps(doc), kind="answer")

    def profile(self, url: str) -> dict:
        return {"url": url, "app": self.app, "tenant": self.tenant, "password": DEMO_API_KEY}


DEMO_API_KEY = "NNSXS.DEMO.SIMULATED-KEY"  # the demo broker takes any key


def airtime_s(size: int, sf: int, bandwidth: int = 125_000) -> float:
    """LoRa time on air (s) for a frame of `size` application bytes (13 bytes of LoRaWAN overhead)."""
    symbol = (2**sf) / bandwidth
    low_rate = 1 if sf >= 11 else 0
    payload_symbols = 8 + max(math.ceil((8 * (size + 13) - 4 * sf + 28 + 16) / (4 * (sf - 2 * low_rate))) * 5, 0)
    return (12.25 + payload_symbols) * symbol


def _stand_in(frame: Frame) -> Frame:
    """A well-formed uplink of the malformed frame's device, whose body the malformed one spoils."""
    return Frame(UPLINK, frame.device, frame.time, f_cnt=frame.f_cnt, f_port=1, payload=b"\x00", decoded={})
