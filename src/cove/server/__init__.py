"""coved: the LXD REST API 1.0 subset in front of the engine.

Handlers parse, call the engine (on worker threads), and render LXD's
envelopes; long actions answer 202 with the engine's ``Operation``.
"""

from cove.server.app import make_app
from cove.server.listen import bind_unix

__all__ = ["bind_unix", "make_app"]
