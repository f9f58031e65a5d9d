"""Integration tests of the HTTP/1.1 core (a package so its conftest and helpers have their own names)."""
