"""App stacks: dependencies, readiness, health and restarts enforced by coved.

Design note: the ``cove.*`` app keys (``cove.model.app_keys``) act at the
points of an instance's life the instances service hands to this service
(``ports.LifecycleHooks``), so every path that starts an instance (the API,
``cove start``, pylxd, ``lxc start``, ``boot.autostart`` at coved's start,
a restart by policy) goes through the same order:

* ``before_start``: each dependency is started (by an ordinary start
  operation, so ITS dependencies come first, transitively) and waited for
  until its condition holds: ``started`` (running), ``ready`` (its
  ``cove.ready`` probe passed once since it started, within its
  ``cove.ready.timeout``, default 30 s), ``healthy`` (its health check
  passed), ``completed`` (it ran to exit 0 for this run of the dependent:
  see below). Independent dependencies are handled in parallel.
  A failure fails the start naming the dependency, its probe and the
  probe's last output; the instance itself is then not started.
* ``before_stop`` (a stop a client asked for): the running dependents are
  stopped first, in parallel, each through its own stop (so theirs first).
* ``before_delete``: refused while others depend on it, unless forced.
* ``check_config``: an unknown name or a cycle is refused when the key is
  set (on the instance or through a profile), never found at start.

``completed`` follows Compose's ``service_completed_successfully`` as
``docker compose up`` runs it: the one-shot is started again for each
start of its dependent (compose#10985: the dependency container starts at
each invocation), not taken as done because it once exited 0. A run counts
if it exited 0 and began since the dependent last started: dependents
started together (or after the stack's ``up`` started the one-shot in its
own level) share one run, and a dependent that never ran takes a run that
already completed. One start at a time per one-shot, so two dependents never
start it twice.

The intent of an ordered start is recorded (``store.app_intents``) before
the first dependency is touched and dropped once the instance runs; a
coved killed in between finishes the order at its next start (``resume``).
A run found ready is kept in the store too (``store.app_ready``, written
once per run when its probe first passes, dropped at its stop), so the
state's ``ready`` flag and a dependent started later need no new probe
after coved restarts while that run lasts.
Health checks are ``_health``'s, restarts ``_restart``'s; this service
listens to the lifecycle events to drive both.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Callable
from typing import Any

from cove.engine._failpoints import failpoint
from cove.engine._health import Health
from cove.engine._probes import Prober
from cove.engine._restart import Restarter
from cove.engine.events import EventBus, Subscription
from cove.engine.operations import Operation, Operations
from cove.engine.ports import StackInstances
from cove.model.app_keys import Dependency, parse_depends, parse_duration, parse_probe
from cove.model.app_order import dependents, find_cycle, graph_of
from cove.model.errors import BadRequest, CoveError, NotFound, Timeout
from cove.model.projects import instance_key, instance_url, split_key
from cove.model.records import Instance
from cove.model.states import Status
from cove.store import Store

__all__ = ["DEFAULT_READY_TIMEOUT", "AppStack"]

log = logging.getLogger("cove.engine")

DEFAULT_READY_TIMEOUT = 30.0
_POLL = 0.1  # how often a waiter looks at a dependency's state
_PROBE_EVERY = 0.1  # how often a readiness probe is tried until it passes


def _plain(key: str) -> str:
    return split_key(key)[1]


class AppStack:
    """The app-stack keys of one root (see module note). Thread-safe;
    satisfies ``ports.LifecycleHooks``."""

    def __init__(self, *, store: Store, instances: StackInstances, operations: Operations,
                 events: EventBus, prober: Prober, clock: Callable[[], float]) -> None:
        self._store = store
        self._instances = instances
        self._now = clock
        self._prober = prober
        self._lock = threading.Lock()
        self._ready: dict[str, float] = {}  # key -> the start (last_used_at) found ready
        self._ready_locks: dict[str, threading.Lock] = {}
        self._once: dict[str, list[str]] = {}  # key -> the command of its next start
        self.health = Health(config_of=self.config_of, prober=prober, events=events,
                             on_unhealthy=self._on_unhealthy,
                             paused=lambda key: self._status(key) is Status.FROZEN,
                             rows=store.app_health)
        self.restarter = Restarter(store=store, instances=instances, operations=operations,
                                   config_of=self.config_of, after_restart=self._cascade_later)
        # events handled one at a time, in order (reentrant: handling one may publish one)
        self._drain_lock = threading.RLock()
        self._sub: Subscription = events.subscribe({"lifecycle"}, notify=self._drain)
        self._events = events

    def close(self) -> None:
        """Stop listening, checking and restarting. Idempotent."""
        self._sub.close()
        self.restarter.close()
        self.health.close()

    # -- reads ------------------------------------------------------------------
    def config_of(self, key: str) -> dict[str, str] | None:
        """The expanded config of the instance keyed ``key``, None if gone."""
        try:
            inst = self._store.get_instance(key)
        except NotFound:
            return None
        return self._instances.expanded_config(inst)

    def _graph(self, project: str | None) -> dict[str, list[Dependency]]:
        return graph_of({i.name: i.expanded_config or {}
                         for i in self._instances.all(project=project)})

    def _deps_of(self, key: str) -> list[Dependency]:
        conf = self.config_of(key)
        if conf is None:
            return []
        return graph_of({key: conf})[key]

    def state(self, name: str) -> dict[str, Any]:
        """``{"cove": {"health": ..., "ready": ...}}`` for an instance that has
        a health check or a readiness probe that passed, else {}."""
        health = self.health.get(name)
        with self._lock:
            ready = name in self._ready
        if health is None and not ready:
            return {}
        out: dict[str, Any] = {"ready": ready}
        if health is not None:
            out["health"] = health.to_dict()
        return {"cove": out}

    # -- a start with another command ---------------------------------------------
    def start_once(self, name: str, command: list[str], *, project: str = "default",
                   wait_for_lock: float = 0) -> Operation:
        """Start ``name`` (its dependencies first, as any start) running
        ``command`` instead of its own, this once; the next start runs its
        own again. Not idempotent.

        Raises: as ``change_state`` (BadRequest, NotFound, Conflict), and
        BadRequest for an empty command.
        """
        if not command or not all(isinstance(c, str) for c in command):
            raise BadRequest("command must be a non-empty list of strings")
        key = instance_key(project, name)
        with self._lock:
            self._once[key] = list(command)
        try:
            op = self._instances.change_state(name, "start", project=project,
                                              wait_for_lock=wait_for_lock)
        except BaseException:
            with self._lock:
                self._once.pop(key, None)
            raise
        op.add_listener(lambda o: self._drop_once(key, command) if o.done else None)
        return op

    def _drop_once(self, key: str, command: list[str]) -> None:
        """The start ended: a command it did not use is not kept for the next."""
        with self._lock:
            if self._once.get(key) == command:
                del self._once[key]

    def run_config(self, name: str, config: dict[str, str]) -> dict[str, str]:
        """``config`` with ``cove.cmd`` replaced by a command given for this
        start only (``start_once``), which is then used up."""
        with self._lock:
            command = self._once.pop(name, None)
        return config if command is None else {**config, "cove.cmd": shlex.join(command)}

    # -- the hooks -------------------------------------------------------------
    def check_config(self, name: str, config: dict[str, str]) -> None:
        """Raises BadRequest for an unknown dependency or a cycle (see module note)."""
        deps = parse_depends(config.get("cove.depends") or "")
        if not deps:
            return
        project = split_key(name)[0]
        graph = self._graph(project)
        for d in deps:
            key = instance_key(project, d.name)
            if key == name:
                raise BadRequest(f"Invalid cove.depends: {_plain(name)} cannot depend on itself")
            if key not in graph:
                raise BadRequest(f"Invalid cove.depends: no instance {d.name!r} "
                                 f"in project {project!r}")
        graph[name] = graph_of({name: config})[name]
        cycle = find_cycle(graph)
        if cycle:
            if name in cycle[:-1]:  # named from the instance being changed
                i = cycle.index(name)
                cycle = [*cycle[i:-1], *cycle[:i], name]
            raise BadRequest("Invalid cove.depends: dependency cycle "
                             + " -> ".join(_plain(k) for k in cycle))

    def before_start(self, name: str) -> None:
        """Start and wait for what ``name`` depends on (see module note).

        Raises:
            BadRequest: a dependency is missing, failed to start, stopped, or
                did not complete with exit 0.
            Timeout: a dependency was not ready (or healthy) in time.
        """
        self.restarter.started(name)
        deps = self._deps_of(name)
        if not deps:
            return
        me = self._get(name)
        since = (me.last_used_at or 0.0) if me is not None else 0.0  # its last start
        self._store.app_intents.add(name, "start", self._now())
        errors: list[CoveError] = []

        def one(dep: Dependency) -> None:
            try:
                self._satisfy(name, dep, since)
            except CoveError as e:
                errors.append(e)
            except Exception as e:  # a bug must fail the start, not hang it
                log.exception("dependency %s of %s", dep.name, name)
                errors.append(BadRequest(f"{_plain(name)}: dependency {_plain(dep.name)}: {e}"))

        threads = [threading.Thread(target=one, args=(d,), name=f"dep-{d.name}", daemon=True)
                   for d in deps[1:]]
        for t in threads:
            t.start()
        one(deps[0])
        for t in threads:
            t.join()
        if errors:
            self._store.app_intents.remove(name)
            raise errors[0]
        failpoint("deps.before-start")  # dependencies up, the instance not yet

    def cancel_restart(self, name: str) -> bool:
        """See ``ports.LifecycleHooks.cancel_restart``."""
        return self.restarter.cancel(name)

    def before_stop(self, name: str, timeout: float, force: bool) -> None:
        """Stop ``name``'s running dependents first, in parallel.

        Raises: BadRequest, Timeout (a dependent would not stop; ``name``
        is then left running).
        """
        self.restarter.expect_stop(name)
        project = split_key(name)[0]
        graph = self._graph(project)
        todo = sorted(k for k in dependents(graph, name) if self._status(k) in
                      (Status.RUNNING, Status.FROZEN))
        errors: list[CoveError] = []

        def stop(key: str) -> None:
            try:
                op = self._instances.change_state(_plain(key), "stop", project=project,
                                                  timeout=timeout, force=force,
                                                  wait_for_lock=60)
                op.wait()
                op.raise_for_error()
            except CoveError as e:
                if self._status(key) not in (Status.STOPPED, None):
                    errors.append(e)

        threads = [threading.Thread(target=stop, args=(k,), daemon=True) for k in todo]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise BadRequest(f"Cannot stop {_plain(name)}: a dependent did not stop: "
                             f"{errors[0]}")

    def before_delete(self, name: str, force: bool) -> None:
        """Raises BadRequest naming the dependents, unless ``force``."""
        if force:
            return
        users = sorted(dependents(self._graph(split_key(name)[0]), name))
        if users:
            raise BadRequest(f"Instance {_plain(name)} is a dependency of "
                             f"{', '.join(_plain(k) for k in users)} (cove.depends); "
                             "delete those first or force it")

    # -- conditions ---------------------------------------------------------------
    def _status(self, key: str) -> Status | None:
        try:
            return self._store.get_instance(key).status
        except NotFound:
            return None

    def _get(self, key: str) -> Instance | None:
        try:
            return self._store.get_instance(key)
        except NotFound:
            return None

    def _satisfy(self, owner: str, dep: Dependency, since: float) -> None:
        inst = self._get(dep.name)
        if inst is None:
            raise BadRequest(f"{_plain(owner)} depends on {_plain(dep.name)!r}, "
                             "which does not exist")
        conf = self._instances.expanded_config(inst)
        timeout = _ready_timeout(conf)
        deadline = time.monotonic() + timeout
        if dep.condition == "completed":
            self._run_once_for(owner, dep.name, since)
            self._wait_completed(owner, dep.name, deadline, timeout)
            return
        if inst.status is Status.STOPPED:
            self._start(owner, dep.name)
        if dep.condition == "ready":
            self.wait_ready(dep.name, conf, deadline, timeout, owner=owner)
        elif dep.condition == "healthy":
            self._wait_healthy(owner, dep.name, conf, deadline, timeout)

    def _run_once_for(self, owner: str, key: str, since: float) -> None:
        """Start the one-shot ``key`` for this start of ``owner`` unless it
        runs now, or exited 0 from a run begun at or after ``since`` (the
        owner's last start; see the module note). Raises as ``_start``."""
        with self._lock:
            lock = self._ready_locks.setdefault(f"completed:{key}", threading.Lock())
        with lock:  # dependents started together share one run
            inst = self._get(key)
            if inst is None or inst.status is not Status.STOPPED:
                return  # gone (the wait says so) or running: its run counts
            began = inst.last_used_at or 0.0
            if inst.last_exit_code == 0 and began and began >= since:
                return
            self._start(owner, key)

    def _start(self, owner: str, key: str) -> None:
        project, plain = split_key(key)
        try:
            op = self._instances.change_state(plain, "start", project=project,
                                              wait_for_lock=120)
            op.wait()
            op.raise_for_error()
        except CoveError as e:
            if self._status(key) in (Status.RUNNING, Status.FROZEN):
                return  # a sibling started it first
            raise type(e)(f"{_plain(owner)}: dependency {plain} failed to start: {e}") from None

    def wait_ready(self, key: str, conf: dict[str, str], deadline: float, timeout: float,
                   *, owner: str | None = None) -> None:
        """Block until ``key``'s ``cove.ready`` probe passes once for its
        current run (at once without a probe).

        Raises: Timeout naming the probe and its last output; BadRequest if
        it stopped first.
        """
        spec = conf.get("cove.ready")
        if not spec:
            return
        probe = parse_probe(spec)
        who = f"{_plain(owner)}: dependency " if owner else ""
        with self._lock:
            lock = self._ready_locks.setdefault(key, threading.Lock())
        with lock:  # one prober per instance; the others find it ready after
            while True:
                inst = self._get(key)
                if inst is None or inst.status is Status.STOPPED:
                    code = inst.last_exit_code if inst is not None else None
                    raise BadRequest(f"{who}{_plain(key)} stopped before it was ready"
                                     + (f" (exit status {code})" if code is not None else ""))
                marker = inst.last_used_at or 0.0
                with self._lock:
                    if self._ready.get(key) == marker:
                        return
                left = deadline - time.monotonic()
                result = self._prober.run(key, probe, max(0.2, min(left, 5.0)))
                if result.ok:
                    self._mark_ready(key, marker)
                    self._events.lifecycle("instance-ready", instance_url(key),
                                           project=split_key(key)[0], probe=str(probe))
                    return
                if time.monotonic() >= deadline:
                    raise Timeout(f"{who}{_plain(key)} was not ready within {timeout:g}s: "
                                  f"cove.ready probe {str(probe)!r} failed, last output: "
                                  f"{result.output.strip() or '(none)'}")
                time.sleep(min(_PROBE_EVERY, max(0.0, deadline - time.monotonic())))

    def _mark_ready(self, key: str, marker: float) -> None:
        """``key``'s run that began at ``marker`` passed its probe: kept in
        memory and, once per run, in the store (under the lock, so that a
        stop's removal cannot overtake the write). Never raises."""
        with self._lock:
            if self._ready.get(key) == marker:
                return
            self._ready[key] = marker
            try:
                self._store.app_ready.put(key, marker)
            except Exception:
                log.exception("recording that %s is ready", key)

    def _unready(self, key: str, *, unless: float | None = None) -> None:
        """``key``'s ready run is over (unless it is the run that began at
        ``unless``): forgotten, and its row dropped. Idempotent; never raises."""
        with self._lock:
            if key not in self._ready or self._ready[key] == unless:
                return
            del self._ready[key]
            try:
                self._store.app_ready.remove(key)
            except Exception:
                log.exception("forgetting that %s is ready", key)

    def _wait_healthy(self, owner: str, key: str, conf: dict[str, str], deadline: float,
                      timeout: float) -> None:
        if not conf.get("cove.health"):
            raise BadRequest(f"{_plain(owner)}: dependency {_plain(key)} has no cove.health "
                             "check to be healthy by")
        st = self.health.wait_status(key, "healthy", deadline)
        if st is not None and st.status == "healthy":
            return
        if st is None:
            raise BadRequest(f"{_plain(owner)}: dependency {_plain(key)} stopped before it "
                             "was healthy")
        raise Timeout(f"{_plain(owner)}: dependency {_plain(key)} was not healthy within "
                      f"{timeout:g}s ({st.status}): cove.health probe "
                      f"{conf.get('cove.health')!r}, last output: {st.output.strip() or '(none)'}")

    def _wait_completed(self, owner: str, key: str, deadline: float, timeout: float) -> None:
        while True:
            inst = self._get(key)
            if inst is None:
                raise BadRequest(f"{_plain(owner)}: dependency {_plain(key)} was deleted")
            if inst.status is Status.STOPPED:
                if inst.last_exit_code == 0:
                    return
                raise BadRequest(f"{_plain(owner)}: dependency {_plain(key)} did not complete: "
                                 f"exit status {inst.last_exit_code}")
            if time.monotonic() >= deadline:
                raise Timeout(f"{_plain(owner)}: dependency {_plain(key)} did not complete "
                              f"within {timeout:g}s")
            time.sleep(_POLL)

    # -- events: health, restarts, intents -----------------------------------------
    def _drain(self) -> None:
        with self._drain_lock:
            for event in self._sub.drain():
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("app-stack handling of %s", event.get("metadata"))

    def _on_event(self, event: dict[str, Any]) -> None:
        meta = event.get("metadata") or {}
        action = meta.get("action", "")
        source = str(meta.get("source", ""))
        if not source.startswith("/1.0/instances/"):
            return
        name = source[len("/1.0/instances/"):].split("?", 1)[0]
        if "/" in name:
            return  # a snapshot, a log ...
        key = instance_key(event.get("project") or "default", name)
        if action == "instance-started":
            self._store.app_intents.remove(key)
            self.health.track(key)
            me = self._get(key)  # a run whose stop went unseen is over too
            self._unready(key, unless=(me.last_used_at or 0.0) if me is not None else None)
        elif action == "instance-stopped":
            self.health.forget(key)
            self._unready(key)
            code = (meta.get("context") or {}).get("exit_code")
            self.restarter.on_exit(key, code if isinstance(code, int) else None)
        elif action == "instance-restarted":
            self._cascade_later(key)
        elif action == "instance-updated" and self._status(key) is Status.RUNNING:
            self.health.refresh(key)  # cove.health set or removed while it runs
        elif action == "instance-deleted":
            self.health.forget(key)
            self._unready(key)
            self.restarter.forget(key)
            self._store.app_intents.remove(key)
        elif action == "instance-renamed":
            old = str((meta.get("context") or {}).get("old_name") or "")
            if old:
                self._follow_rename(event.get("project") or "default", old, name)

    def _follow_rename(self, project: str, old: str, new: str) -> None:
        """``old`` was renamed ``new``: the instances' own ``cove.depends``
        that named it name ``new`` (a profile's value is the profile's)."""
        old_key = instance_key(project, old)
        self.health.forget(old_key)
        self._unready(old_key)
        self.restarter.forget(old_key)
        for inst in self._store.list_instances(project):
            try:
                deps = parse_depends(inst.config.get("cove.depends") or "")
            except BadRequest:
                continue
            if any(d.name == old for d in deps):
                inst.config["cove.depends"] = ",".join(
                    str(Dependency(new, d.condition, d.restart) if d.name == old else d)
                    for d in deps)
                self._store.update_instance(inst)
                self._events.lifecycle("instance-updated", instance_url(inst.name),
                                       project=project)

    def _on_unhealthy(self, key: str) -> None:
        self.restarter.on_unhealthy(key)

    def _cascade_later(self, key: str) -> None:
        threading.Thread(target=self._cascade, args=(key,), name=f"cascade-{key}",
                         daemon=True).start()

    def _cascade(self, key: str) -> None:
        """``key`` was restarted: once it is ready, restart the running
        dependents that asked for it (``NAME:restart``)."""
        project = split_key(key)[0]
        graph = self._graph(project)
        users = sorted(k for k, deps in graph.items()
                       if any(d.name == key and d.restart for d in deps))
        if not users:
            return
        conf = self.config_of(key) or {}
        timeout = _ready_timeout(conf)
        try:
            self.wait_ready(key, conf, time.monotonic() + timeout, timeout)
        except CoveError as e:
            log.warning("not restarting the dependents of %s: %s", key, e)
            return
        for user in users:
            if self._status(user) is not Status.RUNNING:
                continue
            try:
                op = self._instances.change_state(_plain(user), "restart", project=project,
                                                  wait_for_lock=60)
                op.wait()
                op.raise_for_error()
            except CoveError as e:
                log.warning("restart of %s after %s failed: %s", user, key, e)

    # -- startup -----------------------------------------------------------------
    def _resume_ready(self, runs: dict[str, float]) -> None:
        """The persisted ready runs that still run (key -> start) count
        again; the other rows go. Never raises."""
        try:
            saved = self._store.app_ready.all()
        except Exception:
            log.exception("reading the ready instances")
            return
        with self._lock:
            for key, marker in saved.items():
                if runs.get(key) == marker:
                    self._ready[key] = marker
                    continue
                try:
                    self._store.app_ready.remove(key)
                except Exception:
                    log.exception("forgetting that %s was ready", key)

    def resume(self) -> None:
        """At coved's start, after the reconciler: check the health of what
        runs, count ready again the runs found ready before (their rows;
        the rows of runs that ended are dropped), finish the ordered starts
        a killed coved left, start what has ``cove.restart=always``, and
        start the dependencies of running instances that a crash left
        stopped. Logs what it cannot do; never raises."""
        running = [i for i in self._instances.all(project=None)
                   if i.status in (Status.RUNNING, Status.FROZEN)]
        self.health.resume([i.name for i in running])  # from their persisted states
        self._resume_ready({i.name: i.last_used_at or 0.0 for i in running})
        for key in self._store.app_intents.all():
            project, plain = split_key(key)
            try:
                if self._status(key) is Status.STOPPED:
                    log.info("finishing the ordered start of %s", key)
                    op = self._instances.change_state(plain, "start", project=project,
                                                      wait_for_lock=60)
                    op.wait()
                    op.raise_for_error()
            except CoveError as e:
                log.warning("cannot finish the ordered start of %s: %s", key, e)
            self._store.app_intents.remove(key)
        for inst in self._instances.all(project=None):
            # cove.restart=always: started whenever coved starts (Docker's)
            if inst.status is Status.STOPPED and (inst.expanded_config or {}).get(
                    "cove.restart") == "always":
                project, plain = split_key(inst.name)
                try:
                    self._instances.change_state(plain, "start", project=project,
                                                 wait_for_lock=60).wait()
                except CoveError as e:
                    log.warning("cannot start %s (cove.restart=always): %s", inst.name, e)
        for inst in running:
            for dep in self._deps_of(inst.name):
                if dep.condition != "completed" and self._status(dep.name) is Status.STOPPED:
                    log.info("%s runs but its dependency %s does not: starting it",
                             inst.name, dep.name)
                    try:
                        self._satisfy(inst.name, dep, inst.last_used_at or 0.0)
                    except CoveError as e:
                        log.warning("%s", e)


def _ready_timeout(conf: dict[str, str]) -> float:
    value = conf.get("cove.ready.timeout")
    if not value:
        return DEFAULT_READY_TIMEOUT
    try:
        return parse_duration(value, "cove.ready.timeout")
    except BadRequest:
        return DEFAULT_READY_TIMEOUT
