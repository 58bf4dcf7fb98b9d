"""Tektelic network server traffic: the MQTT_V2 integration's uplinks on its pushTopic.

Each uplink is what an application's converter V2 returns (`{"data", "errors", "warnings",
"tektelicMetadata"}`, samples/tektelic_passthrough_v2_uplink_shape.txt and
tektelic_metadata_fragment_1.txt): environment sensors and trackers behind a decoding converter
(`data` is the decoded object), door contacts and water meters behind the pass-through converter
(`data` is `{"bytes": [...]}`). dataRate is the LoRaWAN DR index of rfRegion EU868, recvTime epoch
milliseconds. Tektelic publishes no join events and no downlink reports over MQTT_V2, so a rejoin
shows only as a frame counter starting again and a downlink on pullTopic is taken silently.
"""

from __future__ import annotations

import orjson

from app.simulate.base import Message, Simulator, malformed_body
from app.simulate.fleet import JOIN, MALFORMED, Fleet, Frame

PUSH_TOPIC = "ttt_push_demo000001"
PULL_TOPIC = "ttt_pull_demo000001"
APPLICATION_ID = "5a7c3e10-1d2b-11ef-9f49-f7efa75f53dd"
APPLICATION_NAME = "Uplink demo"
DECODED_TYPES = ("env-sensor", "gps-tracker")  # behind a decoding converter; the others pass bytes through


class TektelicSimulator(Simulator):
    platform = "tektelic"

    def __init__(self, fleet: Fleet, *, push_topic: str = PUSH_TOPIC, pull_topic: str = PULL_TOPIC, **settings):
        super().__init__(fleet, **settings)
        self.push_topic, self.pull_topic = push_topic, pull_topic

    def body(self, frame: Frame) -> dict:
        device = frame.device
        meta = {
            "applicationId": APPLICATION_ID,
            "applicationName": APPLICATION_NAME,
            "deviceEui": device.dev_eui,
            "deviceName": device.device_id,
            "deviceClass": "A",
            "deviceModelName": device.type.model,
            "ackBit": False,
            "fPort": frame.f_port,
            "adrBit": True,
            "fCntUp": frame.f_cnt,
            "fCntDown": device.f_cnt_down,
            "recvTime": int(frame.time.timestamp() * 1000),
            "devAddr": device.dev_addr.lower(),
            "confirmed": frame.confirmed,
            "dataRate": 12 - frame.spreading_factor,
            "uLFreq": frame.frequency_hz,
            "margin": int((frame.best.snr if frame.best else 0) + 10),
            "battery": 254 if frame.decoded is None else 200,
            "rfRegion": "EU868",
            "gatewayCount": len(frame.receptions),
            "gatewayRxInfo": [
                {
                    "gwEui": r.gateway.eui,
                    "antennaId": 0,
                    "rssi": r.rssi,
                    "snr": r.snr,
                    "lat": r.gateway.latitude,
                    "lon": r.gateway.longitude,
                    "alt": 420.0,
                    "gatewayName": r.gateway.name,
                    "channel": r.channel,
                }
                for r in frame.receptions
            ],
        }
        data = dict(frame.decoded or {}) if device.type.name in DECODED_TYPES else {"bytes": list(frame.payload)}
        return {"data": data, "errors": [], "warnings": [], "tektelicMetadata": meta}

    def messages(self, frame: Frame) -> list[Message]:
        if frame.kind == JOIN:
            return []
        if frame.kind == MALFORMED:
            good = orjson.dumps({"data": {"bytes": [0]}, "tektelicMetadata": {"deviceEui": frame.device.dev_eui}})
            return [Message(self.push_topic, malformed_body(frame, good), kind=MALFORMED)]
        return [Message(self.push_topic, orjson.dumps(self.body(frame)))]

    def listen(self) -> list[str]:
        return [self.pull_topic]

    def profile(self, url: str) -> dict:
        host, port = _host_port(url)
        return {
            "host": host,
            "port": port,
            "push_topic": self.push_topic,
            "pull_topic": self.pull_topic,
            "mqtt_version": "3.1.1",
        }


def _host_port(url: str) -> tuple[str, int]:
    from app.mqtt.config import parse_url

    config = parse_url(url)
    return config.host, config.effective_port
