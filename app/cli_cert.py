"""`uplink-console cert …`: inspect, convert, generate and fetch certificates and keys."""

from __future__ import annotations


def add_parsers(sub) -> None:
    """Registers the `cert` subcommands on the top-level subparsers."""
