"""``/``, ``/1.0`` and coved's OpenAPI document; storage pools are
``routes_storage``, networks ``routes_networks``, profiles ``routes_profiles``,
certificates ``routes_trust``."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from aiohttp import web

import cove
from cove.model.trust import cert_der, fingerprint
from cove.server import render
from cove.server.routes_common import call, engine_of
from cove.server.routes_trust import TRUSTED, https_listener

__all__ = ["API_EXTENSIONS", "add_routes", "add_server_routes"]

# Only what cove really implements; clients check these before using a feature.
API_EXTENSIONS: list[str] = [
    "etag",                            # ETag on GET /1.0/instances/NAME, If-Match on PUT/PATCH
    "patch",                           # PATCH on instances, images, aliases
    "container_last_used_at",
    "container_edit_metadata",         # .../metadata and .../metadata/templates?path=
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
    "cove_instances_keys",             # GET /1.0/instances?cove-keys=name,state.network
    "instances",                       # /1.0/instances (and /1.0/containers)
    "instance_create_start",           # POST /1.0/instances {"start": true}
    "api_filtering",                   # ?filter= on instance and image lists
    "network",                         # /1.0/networks (managed bridges)
    "network_state",                   # GET /1.0/networks/NAME/state
    "network_leases",                  # GET /1.0/networks/NAME/leases
    "proxy",                           # proxy devices (a forwarder, or nat=true)
    "proxy_udp",
    "proxy_tcp_udp_multi_port_handling",  # listen=tcp:0.0.0.0:80,443 / 8000-8010
    "proxy_unix",                      # listen/connect=unix:/path or unix:@abstract
    "proxy_unix_dac_properties",       # uid, gid, mode of a listening unix socket
    "proxy_haproxy_protocol",          # proxy_protocol=true (PROXY v1 header)
    "proxy_nat",                       # nat=true (DNAT)
    "profile_usedby",                  # used_by in /1.0/profiles/NAME (writable profiles)
    "metrics",                         # GET /1.0/metrics, core.metrics_address, metrics certs
    "metrics_cpu_seconds",             # lxd_cpu_seconds_total in seconds
    "metrics_instances_count",         # lxd_instances{project,type}
    "metrics_authentication",          # core.metrics_authentication=false: open to all
    "resources",                       # GET /1.0/resources
    "resources_v2",                    # its v2 shape (lxc info --resources needs it)
    "resources_cpu_socket",
    "resources_numa",
    "resources_cpu_threads_numa",
    "resources_cpu_core_die",
    "resources_system",
    "projects",                        # /1.0/projects, ?project= on every scoped endpoint
    "projects_limits",                 # limits.containers, limits.memory, limits.cpu...
    "projects_limits_instances",       # limits.instances
    "project_usage",                   # GET /1.0/projects/NAME/state
    "instance_all_projects",           # ?all-projects=true on instance lists
    "storage",                         # /1.0/storage-pools: default (dir), custom volumes
    "storage_api_volume_rename",       # POST .../volumes/custom/NAME {"name": ...}
    "console",                         # GET/DELETE/POST .../console (log, attach)
    "snapshot_expiry",                 # expires_at, snapshots.expiry (coved deletes them)
    "snapshot_expiry_creation",        # expires_at in POST .../snapshots
    "snapshot_scheduling",             # snapshots.schedule, .stopped, .pattern (coved runs them)
    "snapshot_schedule_aliases",       # @hourly, @daily...
    "container_backup",                # /1.0/instances/NAME/backups, import (routes_backups)
    "backup_compression",              # backups compressed (gzip by default)
    "backup_compression_algorithm",    # compression_algorithm: none, gzip, bzip2, xz
    "container_backup_override_pool",  # import with X-LXD-pool
    "backup_override_name",            # import with X-LXD-name
    "cove_backup_incremental",         # cove_since: a backup of what changed; applied on import
    "snapshot_disk_usage",             # a snapshot's size
    "container_copy_project",          # a copy's source.project (another project's instance)
    "container_only_migration",        # a copy's source.instance_only (no snapshots)
    "instances_rebuild",               # POST /1.0/instances/NAME/rebuild
    "instances_state_selective_recursion",  # recursion=2;fields=state.network (cove list)
    "instance_oci",                    # source protocol oci: images pulled from OCI registries
    "cove_image_push",                 # POST /1.0/images/FP/push to an OCI registry
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
    env["project"] = request.query.get("project") or "default"
    return render.sync({**public, "config": config, "environment": env})


_OPENAPI = web.AppKey("openapi", dict[str, Any])  # {"doc": ...} once made


async def _openapi(request: web.Request) -> web.Response:
    """coved's OpenAPI description, made from its router and wire classes
    on first use (see ``server.openapi``); plain JSON, as LXD serves its
    swagger file."""
    cache = request.app[_OPENAPI]
    if "doc" not in cache:
        from cove.server.openapi import document
        cache["doc"] = await call(request, document, request.app)
    return web.json_response(cache["doc"])


def add_server_routes(app: web.Application) -> None:
    """``/`` and ``GET /1.0`` only (what the metrics-only site serves too)."""
    r = app.router
    r.add_get("/", _root)
    r.add_get("/1.0", _server)
    r.add_get("/1.0/", _server)


def add_routes(app: web.Application) -> None:
    add_server_routes(app)
    r = app.router
    app[_OPENAPI] = {}
    r.add_get("/1.0/openapi.json", _openapi)
