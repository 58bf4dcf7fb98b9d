"""Realistic traffic for demos, benchmarks and tests: The Things Stack uplinks shaped like the
real ones (tests/samples/tts_up_1.json), several devices and gateways, radio values that move.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import struct

import orjson

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
