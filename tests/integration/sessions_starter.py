"""A second process for the in-flight guard tests: starts one session and
prints the outcome as one JSON line. ``block`` makes it stop for good
just after its instance was made (before the start), as a hub that hangs
or dies there would.

    python sessions_starter.py SOCKET REALM USER IMAGE APP LEASE MODE
"""

from __future__ import annotations

import json
import sys
import time

from cove.client import RestDriver
from cove.model.errors import CoveError
from cove.sessions import OperationInProgress, SessionManager


def main() -> int:
    socket, realm, user, image, app, lease, mode = sys.argv[1:8]
    m = SessionManager(RestDriver(socket), realm=realm, lease=float(lease))
    if mode == "block":
        send = m._send

        def blocking(req):  # type: ignore[no-untyped-def]
            if req.method == "PUT" and req.path.split("?")[0].endswith("/state") \
                    and (req.body or {}).get("action") == "start":
                print(json.dumps({"blocked": True}), flush=True)
                while True:
                    time.sleep(60)
            return send(req)

        m._send = blocking
    elif mode.startswith("at="):
        time.sleep(max(0.0, float(mode[3:]) - time.time()))  # start together
    try:
        s = m.start(user, image, app, base_urlpath=f"/user/{user}/")
    except OperationInProgress as e:
        print(json.dumps({"in_progress": e.operation, "message": str(e)}), flush=True)
        return 0
    except CoveError as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps({"started": s.name, "port": s.port, "url_id": s.url_id}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
