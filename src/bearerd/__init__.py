"""bearerd: a local daemon that gives legacy HTTP clients Microsoft Entra bearer tokens."""

__version__ = "0.1.0"
