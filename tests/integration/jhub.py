"""A real JupyterHub and its real configurable-http-proxy for the spawner
tests, installed when missing.

* JupyterHub comes from PyPI (the ``test`` extra of pyproject; installed
  into this interpreter's environment here when it is missing).
* configurable-http-proxy comes from npm, installed under the cove test
  cache (``$COVE_TEST_CACHE`` or ``~/.cache/cove-test``, as
  ``scripts/mkjupyter.py``) with Debian's nodejs/npm (apt-get when missing).
* ``Hub`` runs ``python -m jupyterhub`` on 127.0.0.1 random ports with the
  dummy authenticator and a service token with the admin role, keeps its
  ports and database across ``restart()``, and never cleans up servers on
  shutdown (``cleanup_servers = False``: a restarted hub must find them).

Everything runs on loopback; every process started here is stopped by
``Hub.stop``.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from covetest import REPO, mkroot

CHP_VERSION = "5"


def cache_dir() -> Path:
    env = os.environ.get("COVE_TEST_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cove-test"


def _run(argv: list[str], timeout: float = 900, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, **kw)


def _tail(p: subprocess.CompletedProcess[str]) -> str:
    return " | ".join((p.stderr or p.stdout).strip().splitlines()[-4:])


def ensure_jupyterhub() -> str:
    """JupyterHub's version, pip-installing it here when missing (skip if that fails)."""
    try:
        import jupyterhub
    except ImportError:
        p = _run([sys.executable, "-m", "pip", "install", "-q", "jupyterhub>=5"])
        if p.returncode != 0:
            pytest.skip(f"pip install jupyterhub failed: {_tail(p)}")
        import jupyterhub
    return str(jupyterhub.__version__)


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{' '.join(packages)} missing and apt-get cannot install them here")
    for argv in (["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                 ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]):
        p = _run(argv)
        if argv[1] == "install" and p.returncode == 0:
            return
    pytest.skip(f"apt-get install {' '.join(packages)} failed: {_tail(p)}")


def ensure_chp() -> Path:
    """The configurable-http-proxy program (npm, cached); skip if it cannot be had."""
    prefix = cache_dir() / "npm"
    chp = prefix / "node_modules" / ".bin" / "configurable-http-proxy"
    if chp.exists():
        return chp
    if shutil.which("node") is None or shutil.which("npm") is None:
        _apt_install("nodejs", "npm")
    prefix.mkdir(parents=True, exist_ok=True)
    p = _run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
              f"configurable-http-proxy@{CHP_VERSION}"])
    if p.returncode != 0 or not chp.exists():
        pytest.skip(f"npm install configurable-http-proxy failed: {_tail(p)}")
    return chp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


class Hub:
    """One JupyterHub process (it starts its own configurable-http-proxy)."""

    def __init__(self, chp: Path, config: str, tag: str = "hub") -> None:
        self.dir = mkroot(tag)
        self.public = free_port()
        self.hub_port = free_port()
        self.api_port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.public}"
        self.log = self.dir / "jupyterhub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        (self.dir / "jupyterhub_config.py").write_text(f"""
c = get_config()  # noqa
c.JupyterHub.bind_url = {self.url + "/"!r}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
c.ConfigurableHTTPProxy.command = [{str(chp)!r}]
c.JupyterHub.db_url = "sqlite:///{self.dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{self.dir}/cookie_secret"
c.JupyterHub.pid_file = "{self.dir}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = "{self.dir}/proxy.pid"
c.JupyterHub.cleanup_servers = False
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.services = [{{"name": "covetest", "api_token": {self.token!r}}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["covetest"]}}]
c.JupyterHub.spawner_class = "cove"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120
""" + config)

    # -- process --------------------------------------------------------------------------
    def start(self, timeout: float = 90) -> Hub:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.dir / "jupyterhub_config.py")],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyterhub exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if self.api("GET", "/info")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"jupyterhub did not answer in {timeout}s:\n{self.tail()}")
            time.sleep(0.3)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the hub (it stops the proxy it started); SIGKILL the group
        if it hangs. Servers keep running (``cleanup_servers = False``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._kill_proxy()

    def _kill_proxy(self) -> None:
        # the hub stops its proxy on a clean exit; a killed hub leaves it
        pid_file = self.dir / "proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"configurable-http-proxy" not in f.read():
                    return
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass

    def kill(self) -> None:
        """SIGKILL the hub (no clean-up of its own), then its proxy."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._kill_proxy()
        self._forget_dead_proxy()

    def _forget_dead_proxy(self, timeout: float = 10) -> None:
        """Wait for the killed hub's proxy to die. Orphaned by the hub, it is
        reaped by the machine's init, and where init reaps nothing (some
        sandboxes) it stays a zombie, which a restarted hub takes for a
        proxy still running ("Failed to stop proxy"): its pid file is
        removed then, as a reaped proxy's would be stale anyway."""
        pid_file = self.dir / "proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                return  # gone and reaped
            if state in (b"Z", b"X"):
                pid_file.unlink(missing_ok=True)
                return
            time.sleep(0.1)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # -- HTTP -----------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None,
            timeout: float = 30) -> tuple[int, Any]:
        """The hub's REST API with the admin service token: (status, JSON or None)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/hub/api{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def get(self, path: str, *, token: bool = True, timeout: float = 30) -> tuple[int, bytes]:
        """GET ``path`` through the proxy (with the service token: servers
        accept it as ``access:servers``)."""
        headers = {"Authorization": f"token {self.token}"} if token else {}
        req = urllib.request.Request(self.url + path, headers=headers)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def login(self, user: str, password: str = "any") -> urllib.request.OpenerDirector:
        """Log ``user`` in through the login form (the dummy authenticator);
        the opener holds the session cookies."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(f"{self.url}/hub/login", timeout=30) as r:
            page = r.read().decode()
        m = re.search(r'name="_xsrf" value="([^"]+)"', page)
        xsrf = m.group(1) if m else next((c.value for c in jar if c.name == "_xsrf"), "")
        form = urllib.parse.urlencode({"username": user, "password": password,
                                       "_xsrf": xsrf}).encode()
        with opener.open(f"{self.url}/hub/login?next=", data=form, timeout=60) as r:
            r.read()
        if not any(c.name.startswith("jupyterhub-session-id") or c.name == "jupyterhub-hub-login"
                   for c in jar):
            raise AssertionError(f"login of {user!r} set no hub cookie:\n{self.tail()}")
        opener.cookiejar = jar  # type: ignore[attr-defined]
        return opener

    def wait_server(self, user: str, timeout: float = 180) -> dict[str, Any]:
        """Until ``user``'s default server is ready; its model."""
        deadline = time.monotonic() + timeout
        while True:
            code, model = self.api("GET", f"/users/{urllib.parse.quote(user)}")
            server = (model or {}).get("servers", {}).get("") if code == 200 else None
            if server and server.get("ready"):
                return dict(server)
            if server is None and code == 200 and not (model or {}).get("pending") \
                    and time.monotonic() > deadline - timeout + 5:
                raise AssertionError(f"{user}'s server is neither ready nor pending: "
                                     f"{model}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{user}'s server not ready in {timeout}s: {model}\n"
                                     f"{self.tail()}")
            time.sleep(0.3)

    def wait_stopped(self, user: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code, model = self.api("GET", f"/users/{urllib.parse.quote(user)}")
            if code == 200 and not model.get("servers") and not model.get("pending"):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{user}'s server did not stop: {model}\n{self.tail()}")
            time.sleep(0.3)
