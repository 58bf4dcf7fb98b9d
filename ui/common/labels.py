"""How platforms and event kinds are named and coloured everywhere in the window."""

from __future__ import annotations

PLATFORM_LABELS = {
    "tts": "TTS",
    "tektelic": "Tektelic",
    "akenza": "akenza",
    "thingpark": "ThingPark",
    "drogue": "Drogue",
    "generic": "MQTT",
}
KIND_COLORS = {
    "uplink": "#1a7f37",
    "join": "#0969da",
    "downlink_queued": "#8250df",
    "downlink_sent": "#8250df",
    "downlink_ack": "#1b7c83",
    "downlink_nack": "#bc4c00",
    "downlink_failed": "#cf222e",
    "location": "#6e7781",
    "service_data": "#6e7781",
    "status": "#6e7781",
    "event": "#6e7781",
    "error": "#cf222e",
}
KIND_LABELS = {k: k.replace("downlink_", "down ").replace("_", " ") for k in KIND_COLORS}
# The sidebar's and the welcome page's platform badges.
PLATFORM_COLORS = {
    "tts": "#0d83d0",
    "tektelic": "#d9480f",
    "akenza": "#2b8a3e",
    "thingpark": "#862e9c",
    "drogue": "#1864ab",
    "generic": "#57606a",
    "raw": "#57606a",
}
