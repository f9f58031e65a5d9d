"""An OAuth error as Entra reports it (status, ``error``, AADSTS code, description)."""

from __future__ import annotations


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description
