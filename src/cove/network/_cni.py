"""Running CNI config lists for the NICs of one cove root's instances.

Design note: a CNI plugin configures a namespace given by path
(``CNI_NETNS``). Plugins accept ``/proc/<pid>/ns/net``, but DEL must see
the namespace too, and by the time cove runs DEL the container's init is
gone and so is its ``/proc`` entry: the bridge plugin then skips removing
its IP masquerade rules, and other plugins their host-side state. So the
namespace is *pinned*, as Podman and CRI runtimes do: bind-mounted on
``<root>/run/cni/<instance>/netns`` before the first ADD, passed as
``CNI_NETNS`` to ADD and DEL alike, and unmounted after the last DEL. A pin
survives a coved that is killed, so the startup sweep can still DEL with
the namespace; after a reboot the file is no mount any more and DEL runs
without ``CNI_NETNS`` (the spec allows that; the namespace is gone anyway).

What DEL needs is kept next to the pin, one file per NIC
(``<device>.json``): the cove network, container id, interface name, the
conflist as it was at ADD (a ``cni.path`` file may change meanwhile) and
the final ADD result (DEL's ``prevResult``). The file is written before
the first plugin runs, so an ADD cut short is DELeted too; it is removed
when every DEL succeeded, and a failed DEL is tried again at the next start
of the instance or startup of coved (up to three times: a conflist the
plugin cannot read will never DEL). Plugins run through ``host/proc.py``; a failure is classified by
the plugin's structured error on stdout, never by stderr words.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cove.host import proc
from cove.host.syscalls import MNT_DETACH, MS_BIND, mount, umount2
from cove.model.errors import BadRequest, InternalError
from cove.network import cni

__all__ = ["Cni", "CniAttachment", "CniFailed"]

log = logging.getLogger("cove.network")

PLUGIN_TIMEOUT = 60.0
MAX_DEL_TRIES = 3
# CNI error codes that say the request itself is bad: DEL will never succeed
_PERMANENT = frozenset({1, 2, 4, 6, 7})


class CniFailed(InternalError):
    """A CNI plugin failed; ``code`` is its CNI error code (0 if it gave none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CniAttachment:
    """One NIC of an instance on a cni network, as its state file records it."""

    instance: str
    device: str
    network: str
    container_id: str
    ifname: str
    conf: cni.ConfList
    result: Mapping[str, Any] | None
    del_failures: int = 0  # DELs that failed so far

    def to_json(self) -> str:
        return json.dumps({"network": self.network, "containerid": self.container_id,
                           "ifname": self.ifname, "conflist": self.conf.raw,
                           "result": self.result, "del_failures": self.del_failures},
                          sort_keys=True)


class Cni:
    """CNI attachments of one cove root's instances. Callers serialise per
    instance (the engine's instance lock)."""

    def __init__(self, root: Path, rid: str, plugin_dirs: tuple[str, ...] = cni.PLUGIN_DIRS
                 ) -> None:
        self.dir = Path(root).absolute() / "run" / "cni"
        self.rid = rid
        self.plugin_dirs = plugin_dirs

    # -- plugins and configs --------------------------------------------------------------
    def find_plugin(self, type_: str) -> str | None:
        for d in self.plugin_dirs:
            path = os.path.join(d, type_)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return None

    def check_plugins(self, conf: cni.ConfList, what: str) -> None:
        """Raises BadRequest naming the plugins of ``conf`` not installed."""
        missing = [t for t in conf.types() if self.find_plugin(t) is None]
        if missing:
            raise BadRequest(f"{what}: CNI plugin{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)} not found in "
                             f"{':'.join(self.plugin_dirs)} (Debian's "
                             "containernetworking-plugins installs them in /usr/lib/cni)")

    def load(self, config: Mapping[str, str], what: str) -> cni.ConfList:
        """The conflist a cni network's config names, checked, plugins included.

        Raises:
            BadRequest: no or bad conflist, an unreadable ``cni.path``, a
                plugin that is not installed.
        """
        cni.check_keys(config)
        if config.get("cni.config"):
            conf = cni.parse_conflist(config["cni.config"], f"{what} cni.config")
        else:
            path = cni.validate_cni_path(config["cni.path"])
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read(cni.MAX_CONFIG + 1)
            except (OSError, UnicodeDecodeError) as e:
                raise BadRequest(f"{what}: cannot read cni.path {path}: "
                                 f"{getattr(e, 'strerror', None) or e}") from None
            conf = cni.parse_conflist(text, f"{what} cni.path {path}")
        self.check_plugins(conf, what)
        return conf

    def with_state(self) -> set[str]:
        """The instances that have a directory here (attachments or a pinned
        namespace): one listing for a list of N instances, not N."""
        try:
            return set(os.listdir(self.dir))
        except OSError:
            return set()

    # -- the pinned namespace --------------------------------------------------------------
    def _idir(self, instance: str) -> Path:
        return self.dir / instance

    def netns_path(self, instance: str) -> Path:
        return self._idir(instance) / "netns"

    def pin(self, instance: str, pid: int) -> str:
        """Bind-mount ``pid``'s network namespace on the instance's pin file."""
        d = self._idir(instance)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.netns_path(instance)
        if os.path.ismount(path):
            umount2(path, MNT_DETACH)
        path.touch(mode=0o600)
        mount(f"/proc/{pid}/ns/net", path, None, MS_BIND)
        return str(path)

    def unpin(self, instance: str) -> None:
        """Unmount and remove the pin (idempotent); the instance's directory
        goes too once no state file is left in it."""
        path = self.netns_path(instance)
        while os.path.ismount(path):
            umount2(path, MNT_DETACH)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):  # not empty: a DEL to try again later
            self._idir(instance).rmdir()

    # -- state files -----------------------------------------------------------------------
    def _state_file(self, instance: str, device: str) -> Path:
        return self._idir(instance) / f"{device}.json"

    def _save(self, att: CniAttachment) -> None:
        path = self._state_file(att.instance, att.device)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(att.to_json())
        os.replace(tmp, path)

    def attachments(self, instance: str) -> list[CniAttachment]:
        """The recorded attachments of ``instance`` (unreadable files skipped)."""
        try:
            names = sorted(os.listdir(self._idir(instance)))
        except OSError:
            return []
        out = []
        for n in names:
            if not n.endswith(".json"):
                continue
            try:
                doc = json.loads((self._idir(instance) / n).read_text())
                conf = cni.parse_conflist(json.dumps(doc["conflist"]))
                out.append(CniAttachment(instance, n[:-5], str(doc["network"]),
                                         str(doc["containerid"]), str(doc["ifname"]), conf,
                                         doc.get("result"), int(doc.get("del_failures", 0))))
            except (OSError, ValueError, KeyError, TypeError, BadRequest):
                log.warning("unreadable CNI state %s of %s: removed", n, instance)
                with contextlib.suppress(OSError):
                    (self._idir(instance) / n).unlink()
        return out

    def instances(self) -> list[str]:
        """Instances with a pin or state on the host."""
        try:
            return sorted(e.name for e in os.scandir(self.dir) if e.is_dir())
        except OSError:
            return []

    # -- ADD and DEL -------------------------------------------------------------------------
    def _run(self, att: CniAttachment, command: str, index: int, netns: str | None,
             prev: Mapping[str, Any] | None) -> bytes:
        type_ = att.conf.plugins[index]["type"]
        path = self.find_plugin(type_)
        if path is None:
            raise CniFailed(f"CNI plugin {type_} of network {att.network} is not installed")
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id,
               "CNI_IFNAME": att.ifname, "CNI_PATH": ":".join(self.plugin_dirs),
               "CNI_ARGS": "", "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        if netns is not None:
            env["CNI_NETNS"] = netns
        r = proc.run([path], input=cni.plugin_stdin(att.conf, index, prev), env=env,
                     check=False, timeout=PLUGIN_TIMEOUT)
        if r.returncode != 0:
            code, msg = cni.parse_error(r.stdout)
            if not msg:
                tail = r.stderr.decode(errors="replace").strip().splitlines()
                msg = tail[-1] if tail else f"exit {r.returncode}"
            raise CniFailed(f"CNI {command} of {att.ifname} on network {att.network}: "
                            f"plugin {type_} failed: {msg}"
                            + (f" (CNI error {code})" if code else ""), code)
        return r.stdout

    def add(self, instance: str, device: str, network: str, ifname: str,
            conf: cni.ConfList, netns: str) -> CniAttachment:
        """ADD every plugin of ``conf`` in order, chaining results; record the
        attachment (before the first plugin runs, and with the final result).

        Raises:
            CniFailed: a plugin failed or printed no result (the caller DELs).
        """
        att = CniAttachment(instance, device, network, cni.container_id(self.rid, instance),
                            ifname, conf, None)
        self._save(att)
        result: dict[str, Any] | None = None
        for i in range(len(conf.plugins)):
            out = self._run(att, "ADD", i, netns, result)
            try:
                result = cni.parse_result(out)
            except ValueError:
                raise CniFailed(f"CNI ADD of {ifname} on network {network}: plugin "
                                f"{conf.plugins[i]['type']} printed no result") from None
            att = CniAttachment(instance, device, network, att.container_id, ifname, conf,
                                result)
            self._save(att)
        return att

    def delete(self, att: CniAttachment) -> list[str]:
        """DEL every plugin in reverse order (each is tried). The state file
        goes when all succeeded, or when trying again cannot help: the
        plugin called the request itself bad (CNI errors 1, 2, 4, 6, 7) or
        DEL failed ``MAX_DEL_TRIES`` times. Returns the failures."""
        netns_path = self.netns_path(att.instance)
        netns = str(netns_path) if os.path.ismount(netns_path) else None
        prev = cni.del_prev_result(att.conf, att.result)
        errors = []
        permanent = False
        for i in reversed(range(len(att.conf.plugins))):
            try:
                self._run(att, "DEL", i, netns, prev)
            except CniFailed as e:
                errors.append(str(e))
                permanent = permanent or e.code in _PERMANENT
            except InternalError as e:  # the program could not run or timed out
                errors.append(str(e))
        path = self._state_file(att.instance, att.device)
        if errors and not permanent and att.del_failures + 1 < MAX_DEL_TRIES:
            self._save(replace(att, del_failures=att.del_failures + 1))
            return [f"{e} (DEL is tried again at the next start or startup)" for e in errors]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return [f"{e} (given up)" for e in errors]

    def release(self, instance: str) -> list[str]:
        """DEL every attachment of ``instance``, then unpin (idempotent).
        Returns the DEL failures (their state stays for the next startup)."""
        errors: list[str] = []
        for att in self.attachments(instance):
            errors += self.delete(att)
        self.unpin(instance)
        return errors
