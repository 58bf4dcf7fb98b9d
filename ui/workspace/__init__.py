"""The uplink workspace of a platform connection: table, filter bar, devices, details, charts."""
