"""The certificate manager and the certificate picker of the connection wizards.

The certificates themselves (reading, checking, converting, fetching, generating, the store on
disk with its passwords in the keyring) are the engine's: app/certs.py and app/cert_store.py.
This package only shows them and asks:
- library.py  one store for the whole window, a `changed` signal, which connections use what
- model.py    the list model (kind, name, subject, expiry, status in words and colour)
- details.py  everything about one entry, its fingerprint selectable and copyable
- dialogs.py  import (with the password prompt), convert/export, generate, fetch from a broker
- manager.py  the manager window (Tools → Certificates…), one per window, non-modal
- picker.py   the TLS field of the wizards: a store entry, a file on disk, or none
- expiry.py   what the sidebar marks: certificates of a connection that expire soon
"""
