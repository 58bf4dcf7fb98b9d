"""Downlinks in the window: the composer (form, payload editor, preview, templates) and the Downlinks view."""
