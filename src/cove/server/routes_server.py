"""``/``, ``/1.0`` and the fixed collections cove has one of or none of
(profiles, storage pools); networks are ``routes_networks``, certificates
``routes_trust``."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from aiohttp import web

import cove
from cove.model.errors import NotFound
from cove.model.trust import cert_der, fingerprint
from cove.server import render
from cove.server.routes_common import call, check_project, engine_of, recursion
from cove.server.routes_trust import TRUSTED, https_listener

__all__ = ["API_EXTENSIONS", "add_routes"]

# Only what cove really implements; clients check these before using a feature.
API_EXTENSIONS: list[str] = [
    "etag",                            # ETag on GET /1.0/instances/NAME, If-Match on PUT/PATCH
    "patch",                           # PATCH on instances, images, aliases
    "container_last_used_at",
    "entity_description",
    "directory_manipulation",          # POST/GET directories in .../files
    "container_exec_recording",        # exec record-output
    "container_exec_signal_handling",  # exec control "signal"
    "container_exec_user_group_cwd",   # exec user, group, cwd
    "cove_exec_user_name",             # exec user-name/group-name: resolved in the instance
    "file_delete",
    "file_append",
    "file_symlinks",
    "file_get_symlink",
    "container_full",                  # GET /1.0/instances?recursion=2
    "instance_get_full",               # GET /1.0/instances/NAME?recursion=1
    "instances",                       # /1.0/instances (and /1.0/containers)
    "instance_create_start",           # POST /1.0/instances {"start": true}
    "api_filtering",                   # ?filter= on instance and image lists
    "network",                         # /1.0/networks (managed bridges)
    "network_state",                   # GET /1.0/networks/NAME/state
    "network_leases",                  # GET /1.0/networks/NAME/leases
    "proxy",                           # proxy devices (nat=true)
    "proxy_udp",
    "proxy_tcp_udp_multi_port_handling",  # listen=tcp:0.0.0.0:80,443 / 8000-8010
]


def _environment(engine_env: dict[str, Any]) -> dict[str, Any]:
    """The engine's environment, completed with every field ``lxc`` decodes
    (typed as LXD's ``ServerEnvironment`` so Go can read it)."""
    uname = platform.uname()
    env: dict[str, Any] = {
        "addresses": [],
        "architectures": [uname.machine],
        "certificate": "",
        "certificate_fingerprint": "",
        "driver": "runc",
        "driver_version": "",
        "firewall": "",
        "kernel": uname.system,
        "kernel_architecture": uname.machine,
        "kernel_features": {},
        "kernel_version": uname.release,
        "lxc_features": {},
        "os_name": "",
        "os_version": "",
        "project": "default",
        "server_clustered": False,
        "server_event_mode": "full-mesh",
        "server_pid": os.getpid(),
        "storage": "overlayfs",
        "storage_version": "",
        "storage_supported_drivers": [],
    }
    env.update(engine_env)
    env["server"] = "cove"
    env["server_name"] = engine_env.get("server_name") or socket.gethostname()
    env["server_version"] = cove.__version__
    return env


async def _root(request: web.Request) -> web.Response:
    return render.sync(["/1.0"])


async def _server(request: web.Request) -> web.Response:
    public = {
        "api_extensions": list(API_EXTENSIONS),
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "auth_methods": ["tls"],
        "public": False,
    }
    if not request.get(TRUSTED, True):
        return render.sync({**public, "auth": "untrusted"})
    engine = engine_of(request)
    env = _environment(await call(request, engine.server_environment))
    config = await call(request, engine.trust.server_config)
    pem = await call(request, engine.trust.server_certificate)
    env["certificate"] = pem
    env["certificate_fingerprint"] = fingerprint(cert_der(pem))
    env["addresses"] = https_listener(request.app).bound
    return render.sync({**public, "config": config, "environment": env})


async def _profiles(request: web.Request) -> web.Response:
    check_project(request)
    if recursion(request) == 0:
        return render.sync(["/1.0/profiles/default"])
    return render.sync([await _default_profile(request)])


async def _default_profile(request: web.Request) -> dict[str, Any]:
    instances = await call(request, engine_of(request).instances.all)
    used_by = [f"/1.0/instances/{i.name}" for i in instances if "default" in i.profiles]
    devices = await call(request, engine_of(request).profiles.devices, "default")
    return render.profile("default", used_by, devices)


async def _profile(request: web.Request) -> web.Response:
    check_project(request)
    name = request.match_info["name"]
    if name != "default":
        raise NotFound(f"Profile not found: {name} (cove has only the default profile)")
    return render.sync(await _default_profile(request))


async def _empty_list(request: web.Request) -> web.Response:
    check_project(request)
    return render.sync([])


def _not_found(what: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        raise NotFound(f"{what} not found: {request.match_info['name']}")
    return handler


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", _root)
    r.add_get("/1.0", _server)
    r.add_get("/1.0/", _server)
    r.add_get("/1.0/profiles", _profiles)
    r.add_get("/1.0/profiles/{name}", _profile)
    r.add_get("/1.0/storage-pools", _empty_list)
    r.add_get("/1.0/storage-pools/{name}", _not_found("Storage pool"))
