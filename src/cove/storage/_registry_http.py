"""HTTP for the registry client: one origin's connections, TLS, auth and
the redirect policy. Only :mod:`cove.storage.registry` uses it.

Design notes (what a hostile or sloppy registry cannot make cove do):

* **TLS**: ``https`` is verified against the system CAs, or only against
  ``ca_file`` when one is given (a private CA, or the registry's own
  certificate pinned: ``cove remote add --accept-certificate`` keeps the
  leaf, which is then a trust anchor by itself, self-signed or not). The
  host name is checked in every case.
  Plain ``http`` is allowed only with ``insecure=True`` *and* a loopback
  host (``127.0.0.0/8``, ``::1``, ``localhost``): a test or a local
  registry, never a network path where the traffic can be read or changed.
* **Credentials** go only to the registry's own origin and to the bearer
  token realm it names (which must itself be https, or loopback with
  ``insecure``); they are never sent on a redirect to another host.
* **Redirects**: API calls (``/v2/``, manifests, uploads) follow a redirect
  only within the same origin. A blob GET may be redirected to another
  host (registries hand blobs to object storage: Docker Hub to a CDN,
  ``distribution`` to S3), because the blob is verified by its digest
  while it streams: the target cannot change what cove stores. Such a
  target must be ``https`` (never a downgrade to ``http``) and, unless the
  registry itself is on loopback, must not be a loopback, link-local or
  private address, so a registry cannot point coved (root, on the host) at
  services only the host reaches. At most :data:`MAX_REDIRECTS` hops.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from cove.model.errors import BadRequest, Forbidden, NotFound

__all__ = [
    "MAX_REDIRECTS",
    "Credentials",
    "Origin",
    "RegistryAuthError",
    "RegistryError",
    "Response",
    "credentials_from_file",
    "is_loopback_host",
]

MAX_REDIRECTS = 3
TIMEOUT = 60.0


class RegistryError(BadRequest):
    """The registry answered something cove refuses (or could not be reached)."""


class RegistryAuthError(Forbidden):
    """The registry refused the credentials (or asked for some and had none)."""


Credentials = tuple[str, str]  # (username, password)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (no DNS is asked)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_internal(host: str) -> bool:
    """A host that only this machine or its private networks reach: loopback,
    link-local, private ranges (the name resolved, as the connection will)."""
    if is_loopback_host(host):
        return True
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None)
    except OSError:
        return False  # the connection fails on its own
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if addr.is_loopback or addr.is_link_local or addr.is_private or addr.is_unspecified:
            return True
    return False


def credentials_from_file(path: Path, host: str) -> Credentials | None:
    """The user and password for ``host`` (``name[:port]``) in a
    containers-auth.json or Docker ``config.json`` (``{"auths": {KEY:
    {"auth": base64("user:pass")}}}``, KEY the host or an ``https://`` URL
    of it, Docker Hub's ``https://index.docker.io/v1/`` included).

    Credential helpers (``credsStore``, ``credHelpers``) are not run: cove
    never executes a program an auth file names.

    Raises:
        BadRequest: the file cannot be read or is not such JSON.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadRequest(f"Cannot read the auth file {str(path)!r}: {e}") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        name = str(key)
        if "://" in name:
            name = urllib.parse.urlsplit(name).netloc
        name = name.split("/", 1)[0]
        matches = name == host or (host == "registry-1.docker.io"
                                   and name in ("docker.io", "index.docker.io"))
        if not matches or not isinstance(entry, dict):
            continue
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                user, _, password = base64.b64decode(auth).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise BadRequest(f"The auth file's entry for {host} is not base64 "
                                 "'user:password'") from None
            return user, password
        named, secret = entry.get("username"), entry.get("password")
        if isinstance(named, str) and isinstance(secret, str):
            return named, secret
    return None


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,").lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1:end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        i += 1
    return scheme.lower(), params


class Response:
    """A response whose body is read by the caller (``read``), then ``close``d."""

    def __init__(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self._resp = resp
        self._conn = conn

    def read(self, n: int) -> bytes:
        try:
            return self._resp.read(n)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"Reading from the registry failed: {e}") from None

    def read_all(self, limit: int) -> bytes:
        """The whole body, refused when it is over ``limit`` bytes."""
        data = self.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"The registry's answer is over {limit} bytes")
        return data

    def close(self) -> None:
        self._conn.close()


class Origin:
    """One registry (scheme, host, port) and how to talk to it.

    Not thread-safe: one pull or push at a time per object.

    Raises (constructor):
        BadRequest: a URL that is not http(s), or plain http without
            ``insecure`` or off loopback.
    """

    def __init__(self, url: str, *, credentials: Credentials | None = None,
                 ca_file: Path | None = None, insecure: bool = False) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(f"Registry URL {url!r} must be https://HOST[:PORT]")
        if parts.scheme == "http" and not (insecure and is_loopback_host(parts.hostname)):
            raise BadRequest(f"Registry URL {url!r}: plain http is allowed only with "
                             "insecure on a loopback address")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.netloc = parts.netloc
        self.insecure = insecure
        self._credentials = credentials
        self._ca_file = ca_file
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._tokens: dict[str, str] = {}
        self._basic = False

    # -- one request -------------------------------------------------------------

    def _context(self, own: bool) -> ssl.SSLContext:
        """The registry's own TLS context (its CA when given), or the system
        CAs' for a blob's storage elsewhere (a CDN has a public certificate).
        Made on first use: loading the system CAs costs ~70 ms."""
        ctx = self._contexts.get(own)
        if ctx is None:
            cafile = str(self._ca_file) if own and self._ca_file else None
            try:
                ctx = self._contexts[own] = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as e:
                raise BadRequest(f"Cannot load the CA file {cafile!r}: {e}") from None
            if cafile:  # a pinned server certificate is a trust anchor though a CA signed it
                ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return ctx

    def _connect(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        if scheme == "https":
            own = (host, port) == (self.host, self.port)
            return http.client.HTTPSConnection(host, port, timeout=TIMEOUT,
                                               context=self._context(own))
        return http.client.HTTPConnection(host, port, timeout=TIMEOUT)

    def _send(self, method: str, url: str, headers: Mapping[str, str],
              body: bytes | BinaryIO | None) -> Response:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        conn = self._connect(parts.scheme, parts.hostname or "", port)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if body is not None and not isinstance(body, bytes):
            body.seek(0)  # a file body is sent again after a 401 or a redirect
        try:
            conn.request(method, target or "/", body=body, headers=dict(headers))
            resp = conn.getresponse()
        except ssl.SSLError as e:
            conn.close()
            raise RegistryError(f"TLS with {parts.netloc} failed: {e.reason or e}") from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise RegistryError(f"Cannot reach the registry at {parts.netloc}: {e}") from None
        return Response(resp, conn)

    def _same_origin(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return (parts.scheme, parts.hostname, port) == (self.scheme, self.host, self.port)

    def _check_redirect(self, target: str, *, may_leave: bool) -> None:
        if self._same_origin(target):
            return
        parts = urllib.parse.urlsplit(target)
        if not may_leave:
            raise RegistryError(f"The registry redirected an API call to another origin "
                                f"({parts.scheme}://{parts.netloc}): refused")
        if parts.scheme != "https":
            raise RegistryError(f"The registry redirected a blob to {parts.scheme}://"
                                f"{parts.netloc}: only https targets are followed")
        if not is_loopback_host(self.host) and _is_internal(parts.hostname or ""):
            raise RegistryError(f"The registry redirected a blob to an internal address "
                                f"({parts.netloc}): refused")

    def request(self, method: str, path: str, *, scope: str, headers: Mapping[str, str]
                | None = None, body: bytes | BinaryIO | None = None,
                follow_off_origin: bool = False,
                ok: tuple[int, ...] = (200,)) -> Response:
        """One request to ``path`` (``/v2/...`` or an absolute URL the
        registry gave, e.g. an upload location), authenticated for
        ``scope`` (``repository:NAME:pull``) when the registry asks.

        Raises:
            NotFound: 404.
            RegistryAuthError: 401/403 after authenticating.
            RegistryError: another status not in ``ok``, a refused redirect,
                no connection, bad TLS.
        """
        url = path if "://" in path else f"{self.scheme}://{self.netloc}{path}"
        if not self._same_origin(url):
            raise RegistryError(f"The registry named another origin for a call: {url!r}")
        retried = False
        for _hop in range(MAX_REDIRECTS + 1):
            send = dict(headers or {})
            if self._same_origin(url):
                send.update(self._auth_header(scope))
            resp = self._send(method, url, send, body)
            if resp.status == 401 and self._same_origin(url) and not retried:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.close()
                self._authenticate(challenge, scope)
                retried = True
                continue
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location", "")
                resp.close()
                url = urllib.parse.urljoin(url, location)
                self._check_redirect(url, may_leave=follow_off_origin)
                if resp.status == 303:
                    method, body = "GET", None
                continue
            if resp.status in ok:
                return resp
            detail = _error_text(resp)
            if resp.status == 404:
                raise NotFound(f"Not found in the registry: {detail or path}")
            if resp.status in (401, 403):
                raise RegistryAuthError(f"The registry refused access ({resp.status}): "
                                        f"{detail or 'authentication required'}")
            raise RegistryError(f"The registry answered {resp.status} to {method} "
                                f"{urllib.parse.urlsplit(url).path}: {detail}")
        raise RegistryError(f"More than {MAX_REDIRECTS} redirects for {path}")

    # -- auth ----------------------------------------------------------------------

    def _auth_header(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self._credentials:
            raw = f"{self._credentials[0]}:{self._credentials[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if not self._credentials:
                raise RegistryAuthError("The registry asks for a user and password "
                                        "(basic auth) and none are configured")
            self._basic = True
            return
        if scheme != "bearer" or not params.get("realm"):
            raise RegistryAuthError(f"The registry asks for authentication cove does not "
                                    f"speak: {challenge[:200]!r}")
        self._tokens[scope] = self._fetch_token(params, params.get("scope") or scope)

    def _fetch_token(self, params: Mapping[str, str], scope: str) -> str:
        realm = urllib.parse.urlsplit(params["realm"])
        host = realm.hostname or ""
        if realm.scheme != "https" and not (realm.scheme == "http" and self.insecure
                                            and is_loopback_host(host)):
            raise RegistryAuthError(f"The registry's token realm {params['realm']!r} is "
                                    "not https: refused")
        query = {"service": params.get("service", ""), "scope": scope}
        query = {k: v for k, v in query.items() if v}
        url = params["realm"] + ("&" if realm.query else "?") + urllib.parse.urlencode(query)
        headers: dict[str, str] = {}
        if self._credentials:
            raw = f"{self._credentials[0]}:{self._credentials[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        resp = self._send("GET", url, headers, None)
        try:
            if resp.status != 200:
                raise RegistryAuthError(f"The token server refused ({resp.status}): "
                                        f"{_error_text(resp)}")
            try:
                data = json.loads(resp.read_all(1 << 20))
            except ValueError:
                raise RegistryAuthError("The token server's answer is not JSON") from None
        finally:
            resp.close()
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError("The token server's answer has no token")
        return token


def _error_text(resp: Response) -> str:
    """The registry's error message (``{"errors": [{"code", "message"}]}``)."""
    try:
        raw = resp.read(64 << 10)
    finally:
        resp.close()
    try:
        errors = json.loads(raw).get("errors") or []
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)[:500]
    except (ValueError, AttributeError, TypeError):
        return raw[:200].decode(errors="replace").strip()
