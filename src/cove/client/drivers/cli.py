"""``CliDriver``: builds ``lxc`` (or ``cove``) command lines and runs them
through any Transport.

Design notes:

* The driver knows *how* to say things to the command, the transport *where*
  it runs: ``CliDriver(LocalTransport())`` drives this host's ``lxc``;
  ``CliDriver(outer.transport_for("c1"), "cove")`` drives the ``cove``
  inside container c1, and its own transports nest again (lxd-common's
  nesting). Commands are argv lists all the way down, never shell strings.
* Lifecycle uses the everyday commands (``start``, ``stop --force
  --timeout``, ``delete``); reads, creation and updates go through
  ``query``, which both ``lxc`` and ``cove`` have, because it is the one
  command that takes and prints the API's JSON: a create with devices is
  then one atomic request, not ``init`` plus ``config device add``.
* Errors: the command reports a failure only as an exit status and a line of
  text. Rather than guess from words, the driver checks first what can be
  checked (names, the image, whether the container exists) and, after a
  failure, asks ``query`` what the state is, to raise ``NotFound`` where it
  applies; anything else is ``InternalError`` with the command's own
  message (LXD's error text).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from cove import api
from cove.client._exec import CommandNotFound, ExecResult
from cove.client.drivers.base import (
    Action,
    Create,
    Delete,
    Driver,
    GetInstance,
    GetState,
    ListImages,
    RunCommand,
    Step,
    Update,
)
from cove.client.transports.base import Transport
from cove.client.transports.cli import CliTransport
from cove.model.errors import BadRequest, InternalError, NotFound
from cove.model.names import validate_instance_name

__all__ = ["CliDriver"]


def _message(result: ExecResult) -> str:
    lines = [ln.strip() for ln in result.stderr.decode("utf-8", "replace").splitlines()
             if ln.strip()]
    text = lines[-1] if lines else f"exit status {result.exit_code}"
    return text.removeprefix("Error: ")


class CliDriver(Driver):
    """The host an ``lxc``-like command talks to, run through ``transport``.

    ``command`` is ``"lxc"``, ``"cove"``, or an argv prefix such as
    ``["cove", "--root", "/srv/cove"]``. ``remote`` prefixes every
    container and API path (``remote:c1``), for ``lxc remote add``-ed hosts.
    ``env`` is added to each command's environment. ``timeout`` bounds
    each command (seconds).
    """

    def __init__(self, transport: Transport, command: str | Sequence[str] = "lxc", *,
                 remote: str | None = None, env: Mapping[str, str] | None = None,
                 timeout: float | None = 600) -> None:
        if not isinstance(transport, Transport):
            raise BadRequest(f"CliDriver runs its commands through a Transport, "
                             f"not {type(transport).__name__}")
        self.transport = transport
        self.command = [command] if isinstance(command, str) else [str(c) for c in command]
        if not self.command or not self.command[0]:
            raise BadRequest("The command of a CliDriver is empty")
        if remote is not None and (not remote or ":" in remote or remote.startswith("-")):
            raise BadRequest(f"Bad remote name {remote!r}")
        self.remote = remote
        self.env = dict(env or {})
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"CliDriver({self.transport!r}, {self.command!r})"

    # -- running the command -------------------------------------------------------
    def target(self, name: str) -> str:
        """``name`` as the command wants it (``remote:name``)."""
        return f"{self.remote}:{name}" if self.remote else name

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True,
            timeout: float | None = None) -> ExecResult:
        """Run the command with ``args``; with ``check``, a non-zero exit raises
        ``InternalError`` carrying the command's error message.

        Raises:
            CommandNotFound: the command itself is not installed where it runs.
        """
        argv = [*self.command, *args]
        try:
            result = self.transport.execute(argv, env=self.env, stdin=stdin,
                                            timeout=timeout or self.timeout)
        except CommandNotFound as e:
            raise CommandNotFound(f"{self.command[0]} is not installed where this driver "
                                  f"runs it ({self.transport!r})", argv) from e
        if check and result.exit_code != 0:
            raise InternalError(f"{' '.join([self.command[0], *args[:2]])}: {_message(result)}")
        return result

    def query(self, path: str, *, method: str = "GET", data: Any = None,
              wait: bool = False) -> Any:
        """``<command> query``: one API request; the decoded JSON it prints."""
        args = ["query"]
        if method != "GET":
            args += ["-X", method]
        if data is not None:
            args += ["-d", json.dumps(data)]
        if wait:
            args.append("--wait")
        args.append(f"{self.remote}:{path}" if self.remote else path)
        out = self.run(*args).stdout.strip()
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise InternalError(f"{self.command[0]} query {path} printed no JSON: "
                                f"{out[:200]!r}") from None

    # -- steps -------------------------------------------------------------------------
    def _instance(self, name: str) -> dict[str, Any] | None:
        flt = quote(f"name eq {name}", safe="")
        found = self.query(f"/1.0/instances?recursion=1&filter={flt}") or []
        for inst in found:
            if isinstance(inst, dict) and inst.get("name") == name:
                return inst
        return None

    def _check_image(self, source: Mapping[str, Any]) -> None:
        if source.get("server"):
            return
        images = self.query("/1.0/images?recursion=1") or []
        alias, fp = source.get("alias"), source.get("fingerprint")
        for img in images:
            if alias and any(a.get("name") == alias for a in img.get("aliases") or []):
                return
            if fp and str(img.get("fingerprint", "")).startswith(str(fp)):
                return
        raise NotFound(f"Image not found: {alias or fp}")

    def _do(self, step: Step) -> Any:
        if isinstance(step, GetInstance):
            return self._instance(step.name)
        if isinstance(step, GetState):
            try:
                return self.query(f"/1.0/instances/{quote(step.name, safe='')}/state")
            except InternalError:
                if self._instance(step.name) is None:
                    raise NotFound(f"Instance not found: {step.name}") from None
                raise
        if isinstance(step, ListImages):
            return self.query("/1.0/images?recursion=1") or []
        if isinstance(step, Create):
            self._check_image(step.post.source.to_wire())
            try:
                self.query("/1.0/instances", method="POST", data=step.post.to_wire(), wait=True)
            except InternalError:
                # Undo: a create that failed half-way leaves no container.
                if self._instance(step.name) is not None:
                    self.run("delete", "--force", self.target(step.name), check=False)
                raise
            return None
        if isinstance(step, Update):
            self.query(f"/1.0/instances/{quote(step.name, safe='')}",
                       method="PATCH" if step.patch else "PUT",
                       data=api.InstancePut.from_wire(step.body).to_wire(), wait=True)
            return None
        if isinstance(step, Action):
            return self._action(step)
        if isinstance(step, Delete):
            self._or_not_found(step.name, "delete", self.target(step.name))
            return None
        if isinstance(step, RunCommand):
            return self._command_in(step)
        raise InternalError(f"CliDriver has no command for {type(step).__name__}")

    def _action(self, step: Action) -> None:
        target = self.target(step.name)
        if step.action == "start":
            self._or_not_found(step.name, "start", target)
        elif step.action == "stop":
            args = ["stop", target]
            if step.force:
                args.append("--force")
            if step.timeout >= 0:
                args += ["--timeout", str(step.timeout)]
            self._or_not_found(step.name, *args)
        else:  # freeze / unfreeze: the two commands spell these differently
            self.query(f"/1.0/instances/{quote(step.name, safe='')}/state", method="PUT",
                       data=api.InstanceStatePut(action=step.action, timeout=step.timeout,
                                                 force=step.force).to_wire(), wait=True)

    def _or_not_found(self, name: str, *args: str) -> None:
        try:
            self.run(*args)
        except InternalError:
            if self._instance(name) is None:
                raise NotFound(f"Instance not found: {name}") from None
            raise

    def transport_for(self, name: str) -> CliTransport:
        return CliTransport(self, validate_instance_name(name))
