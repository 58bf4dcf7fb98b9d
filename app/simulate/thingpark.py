"""Actility ThingPark traffic: DevEUI_uplink reports on the uplink topic pattern, and a
DevEUI_downlink_Sent for every DevEUI_downlink the console publishes on the downlink pattern.

Bodies follow samples/thingpark_uplink_1.json and thingpark_downlink_sent_1.json, numbers as the
strings ThingPark writes them ("FCntUp": "1174", "LrrRSSI": "-80.000000"), Frequency in MHz, the
best gateway (Lrrid) the one with the best SNR. Join requests are DevEUI_uplink reports with a
rawJoinRequest and no FPort (spelt Spfact). A downlink is reported sent over the air
(DeliveryStatus 1) with its CorrelationID about a second later; with `failure_rate` some are
reported not sent (DeliveryStatus 0, cause B0: too late for RX1), as a network under load does.
"""

from __future__ import annotations

import datetime as dt

import orjson

from app.platforms.thingpark import DEFAULT_DOWNLINK_PATTERN, DEFAULT_UPLINK_PATTERN, compile_topic_pattern
from app.simulate.base import Answer, Message, Simulator, malformed_body
from app.simulate.fleet import JOIN, MALFORMED, Fleet, Frame

CUSTOMER_ID = "1100000077"


def _offset_time(moment: dt.datetime) -> str:
    """ISO 8601 with milliseconds and an offset, as ThingPark writes Time (Europe/Paris in summer)."""
    local = moment.astimezone(dt.timezone(dt.timedelta(hours=2)))
    return local.isoformat(timespec="milliseconds")


class ThingParkSimulator(Simulator):
    platform = "thingpark"

    def __init__(
        self,
        fleet: Fleet,
        *,
        uplink_pattern: str = DEFAULT_UPLINK_PATTERN,
        downlink_pattern: str = DEFAULT_DOWNLINK_PATTERN,
        failure_rate: float = 0.1,
        **settings,
    ) -> None:
        super().__init__(fleet, **settings)
        self.uplink = compile_topic_pattern(uplink_pattern, "uplink topic pattern")
        self.downlink = compile_topic_pattern(downlink_pattern, "downlink topic pattern")
        self.failure_rate = failure_rate

    def topic(self, dev_eui: str) -> str:
        return self.uplink.fill({"DevEUI": dev_eui})

    def body(self, frame: Frame) -> dict:
        device = frame.device
        best = max(frame.receptions, key=lambda r: r.snr)
        body = {
            "Time": _offset_time(frame.time),
            "DevEUI": device.dev_eui,
            "DevAddr": device.dev_addr,
            "ADRbit": "1",
            "MType": "4" if frame.confirmed else "2",
            "FCntDn": str(device.f_cnt_down),
            "mic_hex": f"{(frame.sequence * 2654435761) & 0xFFFFFFFF:08x}",
            "Lrcid": "00000206",
            "LrrRSSI": f"{best.rssi:.6f}",
            "LrrSNR": f"{best.snr:.6f}",
            "LrrESP": f"{best.rssi - 0.8:.6f}",
            "SubBand": "G1" if frame.frequency_hz < 868_000_000 else "G2",
            "Channel": f"LC{best.channel + 1}",
            "DevLrrCnt": str(len(frame.receptions)),
            "Lrrid": best.gateway.lrr_id,
            "Late": "0",
            "LrrLAT": f"{best.gateway.latitude:.6f}",
            "LrrLON": f"{best.gateway.longitude:.6f}",
            "Lrrs": {
                "Lrr": [
                    {
                        "Lrrid": r.gateway.lrr_id,
                        "Chain": "0",
                        "LrrRSSI": f"{r.rssi:.6f}",
                        "LrrSNR": f"{r.snr:.6f}",
                        "LrrESP": f"{r.rssi - 0.8:.6f}",
                    }
                    for r in frame.receptions
                ]
            },
            "CustomerID": CUSTOMER_ID,
            "CustomerData": {"alr": {"pro": "ADRF/DEMO", "ver": "2"}, "name": device.device_id},
            "Frequency": round(frame.frequency_hz / 1e6, 1),
            "DynamicClass": "A",
        }
        if frame.kind == JOIN:
            body["rawJoinRequest"] = frame.payload.hex()
            body["Spfact"] = str(frame.spreading_factor)
            return body
        body["FPort"] = str(frame.f_port)
        body["FCntUp"] = str(frame.f_cnt)
        body["payload_hex"] = frame.payload.hex()
        body["SpFact"] = str(frame.spreading_factor)
        body["payload"] = frame.decoded
        return body

    def messages(self, frame: Frame) -> list[Message]:
        topic = self.topic(frame.device.dev_eui)
        if frame.kind == MALFORMED:
            good = orjson.dumps({"DevEUI_uplink": {"DevEUI": frame.device.dev_eui, "FPort": "1"}})
            return [Message(topic, malformed_body(frame, good), kind=MALFORMED)]
        kind = "join" if frame.kind == JOIN else "uplink"
        return [Message(topic, orjson.dumps({"DevEUI_uplink": self.body(frame)}), kind=kind)]

    def listen(self) -> list[str]:
        return [self.downlink.topic_filter]

    def answer(self, topic: str, payload: bytes, properties: dict | None = None) -> list[Answer]:
        if self.downlink.extract(topic) is None:
            return []
        try:
            request = orjson.loads(payload).get("DevEUI_downlink")
        except (orjson.JSONDecodeError, AttributeError):
            return []
        if not isinstance(request, dict) or not isinstance(request.get("DevEUI"), str):
            return []
        device = self.fleet.device_named(request["DevEUI"])
        if device is None:
            return []
        sent = self.answer_rnd.random() >= self.failure_rate
        report = {
            "Time": _offset_time(dt.datetime.now(dt.UTC)),
            "DevEUI": device.dev_eui,
            "FPort": request.get("FPort"),
            "FCntDn": device.f_cnt_down,
            "FCntUp": max(device.f_cnt - 1, 0),
            "Lrcid": "00000206",
            "SpFact": device.spreading_factor,
            "SubBand": "G1",
            "Channel": "LC2",
            "Lrrid": device.gateways[0][0].lrr_id,
            "DeliveryStatus": 1 if sent else 0,
            "DeliveryFailedCause1": "00" if sent else "B0",
            "DeliveryFailedCause2": "00",
            "DeliveryFailedCause3": "00",
            "CustomerID": CUSTOMER_ID,
            "CustomerData": {"alr": {"pro": "ADRF/DEMO", "ver": "2"}},
            "TransmissionSlot": 1,
            "Frequency": 868.3,
        }
        if request.get("CorrelationID") is not None:
            report["CorrelationID"] = request["CorrelationID"]
        if sent:
            device.f_cnt_down += 1
        message = Message(self.topic(device.dev_eui), orjson.dumps({"DevEUI_downlink_Sent": report}), kind="answer")
        return [Answer(1.0, message)]

    def profile(self, url: str) -> dict:
        from app.mqtt.config import parse_url

        config = parse_url(url)
        return {
            "host_name": f"{config.host}:{config.effective_port}",
            "protocol": "TCP",
            "uplink_topic_pattern": self.uplink.text,
            "downlink_topic_pattern": self.downlink.text,
            "qos": 0,
            "mqtt_version": "3.1.1",
        }
