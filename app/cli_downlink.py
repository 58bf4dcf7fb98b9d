"""`uplink-console send …` and `uplink-console outbox …`: downlinks through a connection's outbox."""

from __future__ import annotations


def add_parsers(sub) -> None:
    """Registers the `send` and `outbox` subcommands on the top-level subparsers."""
