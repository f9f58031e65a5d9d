"""Local client authentication: the shared key a listener requires, checked in constant time.

Checked before anything else about the request is looked at, and the header carrying it is
dropped before forwarding (``drop`` in header hygiene), so the key never leaves bearerd.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable

from pydantic import SecretStr

from bearerd.errors import ClientKeyRequired


class ClientKeyCheck:
    def __init__(self, header: str, key: SecretStr) -> None:
        self.header = header
        self.lower = header.lower()
        self._proxy_auth = self.lower == "proxy-authorization"
        self._key = key.get_secret_value().encode()

    def verify(self, get: Callable[[str], str | None]) -> None:
        """Raise ``ClientKeyRequired`` unless the request (``get``: its field by lower-case name)
        carries the key."""
        value = get(self.lower)
        presented = ""
        if value is not None:
            presented = _from_proxy_authorization(value) if self._proxy_auth else value.strip()
        if not hmac.compare_digest(presented.encode(), self._key):
            where = (
                "Proxy-Authorization (Bearer KEY, or http://bearerd:KEY@host:port as proxy URL)"
                if self._proxy_auth
                else self.header
            )
            raise ClientKeyRequired(
                f"this listener requires the shared client key in {where}", proxy_auth=self._proxy_auth
            )


def _from_proxy_authorization(value: str) -> str:
    """``Bearer KEY``, or Basic with KEY as the password (proxy URLs carry ``user:KEY@``)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(rest.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return ""
    return ""
