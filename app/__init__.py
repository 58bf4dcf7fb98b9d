"""Uplink Console engine: MQTT sessions, platform codecs, storage. Never imports Qt."""

__version__ = "0.1.0"
