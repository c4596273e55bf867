"""The host's kernel and tools: the one place that runs subprocesses (``proc``)
and raw syscalls (``syscalls``). Every other package goes through here."""
