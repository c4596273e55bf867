"""Per-user app sessions on a cove (or LXD) host: simphony-remote's container
manager, with the in-flight guard held by the server.

    from cove.client import RestDriver
    from cove.sessions import SessionManager

    m = SessionManager(RestDriver(), realm="portal")
    s = m.start("ann@example.org", "jupyter", "notebook", base_urlpath="/user/ann/")
    ...  # the app answers on s.ip:s.port, behind s.urlpath
    m.stop_and_remove(s)
"""

from cove.sessions._flows import MultipleResultsFound, OperationInProgress, Session
from cove.sessions._manager import AsyncSessionManager, SessionManager
from cove.sessions._names import session_name

__all__ = [
    "AsyncSessionManager",
    "MultipleResultsFound",
    "OperationInProgress",
    "Session",
    "SessionManager",
    "session_name",
]
