"""The ``cove`` command line (standard library only on its hot paths)."""
