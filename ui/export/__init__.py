"""Exporting the rows of the current filter (CSV, JSON lines) with progress and cancel."""
