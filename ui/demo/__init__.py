"""The demo in the window: a banner that says the window shows simulated devices, and the
controller that starts app.demo (broker and simulators) off the GUI thread, opens one connection
per platform marked as demo, and stops it all when the window closes.

The demo's connections are never saved: their keys start with DEMO_KEY_PREFIX, the sidebar marks
them, and the window's profile store never sees them.
"""

from ui.demo.controller import DEMO_KEY_PREFIX, DemoController, demo_history_name, is_demo_key

__all__ = ["DEMO_KEY_PREFIX", "DemoController", "demo_history_name", "is_demo_key"]
