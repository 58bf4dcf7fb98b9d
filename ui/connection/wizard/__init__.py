"""The connection wizards: one per platform, pages generated from its profile fields.

    result = open_wizard(window, "tts", existing=profile, secrets=secret_store, taken_names=names)
    if result is not None:
        app.wizard_flow.save_result(result, profile_store, secret_store, existing=profile)

The flow itself (pages, validity, navigation) is app/wizard_flow.py, without Qt.
"""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QWidget

from app.wizard_flow import WizardFlow, WizardResult, flow_for
from ui.connection.wizard.wizard import ConnectionWizard


def make_wizard(
    parent: QWidget | None,
    platform_name: str,
    existing=None,
    secrets=None,
    taken_names=(),
    **options,
) -> ConnectionWizard:
    """The wizard, not yet shown: for a new connection, or to edit `existing` (an
    app.profiles.Profile) with its secrets (a SecretStore, or a {field: value} dict)."""
    flow = flow_for(platform_name, existing, secrets, taken_names)
    return ConnectionWizard(flow, parent, **options)


def open_wizard(
    parent: QWidget | None,
    platform_name: str,
    existing=None,
    secrets=None,
    taken_names=(),
    **options,
) -> WizardResult | None:
    """Runs the wizard modally; the result, or None when the user cancelled. It saves nothing."""
    wizard = make_wizard(parent, platform_name, existing, secrets, taken_names, **options)
    try:
        if wizard.exec() == QDialog.DialogCode.Accepted:
            return wizard.wizard_result
        return None
    finally:
        wizard.deleteLater()


__all__ = ["ConnectionWizard", "WizardFlow", "WizardResult", "make_wizard", "open_wizard"]
