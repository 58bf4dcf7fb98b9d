"""Uplink Console Qt user interface."""
