"""Feature-free widgets and helpers shared by the window's features (never imports a feature)."""
