"""cove: Linux containers on runc, served over the LXD REST API."""

__version__ = "0.1.0"
