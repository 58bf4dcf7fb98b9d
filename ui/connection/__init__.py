"""Connections: the connection bar, TLS settings and the platform forms."""
