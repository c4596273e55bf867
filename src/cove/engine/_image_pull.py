"""Images from remote image servers: simplestreams and another LXD or cove
(``source: {type: image, server, protocol, alias|fingerprint, ...}``).

Design note: a pull resolves the source on its server (an alias becomes a
fingerprint there), uses the local image when that fingerprint is here
already, and else downloads the files into ``<root>/tmp`` (capped, sha256
checked: ``cove.storage.remote_fetch``) and hands them to the images
service's ordinary import (its own operation, waited for), so a pulled image
is unpacked by the same hostile-tarball extractor as an upload. The row in
``store.image_sources`` records where it came from: LXD's ``cached`` (made
for an instance, not asked for), ``auto_update`` and ``update_source``.

LXD's server keys: ``images.remote_cache_expiry`` (days; a cached image not
used for that long is deleted; cove also takes a decimal, so a test can ask
for seconds), ``images.auto_update_cached`` (a cached image refreshes
itself; default true) and ``images.auto_update_interval`` (hours, default
6; 0 turns refreshes off). A refresh asks the server for the source's alias
again and, when it names a new image, pulls it, moves the old one's aliases
to it and deletes the old one (LXD's ``autoUpdateImage``). One thread does
both every ``COVE_IMAGE_TICK`` seconds (60).

An interrupted pull resumes: each file whose sha256 the server announces (a
simplestreams item; an LXD server's unified tarball, hashed by its
fingerprint) is downloaded into ``<root>/downloads`` and kept there when the
pull stops (the connection, a cancel, coved killed), then continued with
``Range`` by the next pull of it and verified whole before it is imported
(``cove.storage.remote_resume``; a server that ignores ``Range`` sends it
again). Nothing else of a killed pull stays: the import is the images
service's (its leftovers swept at start), ``tmp/pull-*`` is swept with
``tmp``, and partial files nobody resumed go after ``SWEEP_AGE``.
The operation's ``fetched_bytes`` says what travelled this time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from cove.api import InstanceSource, InstancesPost
from cove.engine._failpoints import failpoint
from cove.engine._images import Images
from cove.engine.operations import Operation, Operations
from cove.model.errors import BadRequest, CoveError, NotFound
from cove.model.names import validate_instance_name
from cove.model.projects import DEFAULT, instance_key, instance_url
from cove.model.records import Image
from cove.storage import lxd_remote, remote_resume, simplestreams
from cove.storage.images import host_architecture
from cove.storage.remote_fetch import Fetcher, safe_join
from cove.store import Store
from cove.store._image_sources import ImageSource

__all__ = ["PROTOCOLS", "ImagePulls", "check_source"]

log = logging.getLogger("cove.engine")

PROTOCOLS = ("lxd", "simplestreams")
EXPIRY_KEY = "images.remote_cache_expiry"
AUTO_CACHED_KEY = "images.auto_update_cached"
INTERVAL_KEY = "images.auto_update_interval"
_DAY = 86400.0
SWEEP_AGE = 3 * _DAY  # a partial download waits this long for a retry (as registry pulls)


def check_source(src: InstanceSource) -> str:
    """The protocol of a remote image source, checked before anything is made.

    Raises: BadRequest (naming the field: no server, another protocol or
    mode, no alias or fingerprint)."""
    protocol = src.protocol or "lxd"  # LXD's default
    if protocol not in PROTOCOLS:
        raise BadRequest(f"Invalid source protocol {src.protocol!r}: cove pulls from "
                         f"{' and '.join(PROTOCOLS)} image servers")
    if src.mode not in ("", "pull"):
        raise BadRequest(f"Invalid source mode {src.mode!r}: cove pulls images ('pull')")
    if not src.fingerprint and not src.alias:
        raise BadRequest("Source must name an image: give 'alias' or 'fingerprint'")
    Fetcher(src.server, certificate=src.certificate)  # the URL and certificate checked
    return protocol


def _number(config: dict[str, str], key: str, default: float) -> float:
    try:
        return float(config.get(key, "") or default)
    except ValueError:
        return default


class ImagePulls:
    """Pulls from remote image servers, the cache's expiry and refreshes. Thread-safe."""

    def __init__(self, store: Store, images: Images, operations: Operations, *,
                 tmp: Path, clock: Callable[[], float],
                 server_config: Callable[[], dict[str, str]],
                 client_cert: Callable[[], tuple[Path, Path]],
                 create: Callable[..., Operation],
                 downloads: Path | None = None) -> None:
        """``downloads``: where partial downloads are kept (default: beside ``tmp``)."""
        self._store = store
        self._downloads = downloads if downloads is not None else tmp.parent / "downloads"
        self._images = images
        self._operations = operations
        self._tmp = tmp
        self._now = clock
        self._config = server_config
        self._client_cert = client_cert
        self._create = create
        self._lock = threading.Lock()  # guards _pulling
        self._pulling: dict[str, threading.Lock] = {}  # one pull of a fingerprint at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the public calls --------------------------------------------------------------
    def pull(self, src: InstanceSource, *, aliases: list[str] | None = None,
             public: bool = False, auto_update: bool = False,
             project: str = DEFAULT) -> Operation:
        """``POST /1.0/images`` from a remote server, as an operation (its
        result the Image; metadata ``fingerprint``, ``size``). An image that
        is here already is kept and gets the aliases. Not idempotent for
        aliases (an alias that exists is a Conflict, before anything is fetched).

        Raises: BadRequest (the source), Conflict (an alias exists), NotFound (project).
        """
        check_source(src)
        names = self._images.free_aliases(aliases, project=project)

        def work(op: Operation) -> Image:
            img = self.fetch(op, src, project=project, cached=False, public=public,
                             auto_update=auto_update)
            for name in names:
                self._images.add_alias(name, img.fingerprint, project=project)
            op.update(fingerprint=img.fingerprint, size=img.size)  # what LXD's pull reports
            return self._images.get(img.fingerprint, project=project)

        return self._operations.run(work, description="Downloading image",
                                    resources={"images": []}, project=project,
                                    may_cancel=True)

    def create_instance(self, req: InstancesPost, *, project: str = DEFAULT) -> Operation:
        """``POST /1.0/instances`` whose image is on a remote server: the image
        pulled (cached) or found here, then the instance made as from a local
        image (``instances.create``, waited for). Not idempotent.

        Raises: BadRequest (the name, the source), NotFound (project).
        """
        validate_instance_name(req.name)
        check_source(req.source)
        src = req.source

        def work(op: Operation) -> object:
            img = self.fetch(op, src, project=project, cached=True,
                             auto_update=self._auto_cached())
            req.source = InstanceSource(type="image", fingerprint=img.fingerprint)
            inner = self._create(req, project=project)
            op.on_cancel(inner.cancel)
            inner.wait()
            inner.raise_for_error()
            return inner.result

        url = instance_url(instance_key(project, req.name))
        return self._operations.run(work, description="Creating instance",
                                    resources={"instances": [url]}, project=project,
                                    may_cancel=True)

    # -- in an operation ---------------------------------------------------------------
    def fetch(self, op: Operation, src: InstanceSource, *, project: str, cached: bool,
              public: bool = False, auto_update: bool = False) -> Image:
        """The image ``src`` names, here (found, or downloaded and imported).

        Raises: BadRequest/RemoteError (the server, a mismatch), NotFound
        (no such image there), Conflict (a concurrent import)."""
        protocol = check_source(src)
        op.progress("Resolving image", None, text=src.alias or src.fingerprint)
        fetcher = Fetcher(src.server, certificate=src.certificate,
                          client_cert=self._client_cert() if protocol == "lxd" else None,
                          cancelled=lambda: op.cancelled)
        if protocol == "simplestreams":
            ss = self._stream_image(fetcher, src.fingerprint or src.alias)
            fp, size = ss.fingerprint, ss.size
        else:
            remote = lxd_remote.resolve(fetcher, alias=src.alias, fingerprint=src.fingerprint,
                                        secret=src.secret)
            fp, size = remote.fingerprint, remote.size
        with self._lock:
            lock = self._pulling.setdefault(fp, threading.Lock())
        with lock:  # a second launch of the same image waits, then finds it here
            here = self._here(fp, project)
            if here is not None:
                if cached:
                    self._images.mark_used(fp)
                else:  # asked for: no longer LXD's "cached" (never expires)
                    self._store.image_sources.set_flags(fp, cached=False)
                return here
            tmpdir = Path(tempfile.mkdtemp(prefix="pull-", dir=self._tmp))
            try:
                limit = self._images.budget(op).limit or 1 << 40

                def progress(done: int) -> None:
                    pct = min(100, done * 100 // size) if size else None
                    op.progress("Download", pct, text=f"{done // 1024} KiB")

                try:
                    if protocol == "simplestreams":
                        rootfs, meta = self._download_stream(fetcher, ss, tmpdir, limit,
                                                             progress)
                        filename = ss.filename
                    else:
                        rootfs, meta = lxd_remote.download(
                            fetcher, remote, tmpdir, limit=limit, secret=src.secret,
                            progress=progress, downloads=self._downloads)
                        filename = str(remote.info.get("filename") or "")
                finally:
                    op.update(fetched_bytes=fetcher.fetched)  # cove's: what travelled
                inner = self._images.import_file(rootfs, meta_path=meta, filename=filename,
                                                 public=public, project=project)
                op.on_cancel(inner.cancel)
                # the unpacking's progress shown on this operation too
                inner.add_listener(lambda o: op.update(**{
                    k: v for k, v in o.metadata.items()
                    if k == "progress" or k.endswith("_progress")}))
                inner.wait()
                inner.raise_for_error()
                img: Image = inner.result
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
            if img.fingerprint != fp:  # the import hashed what it read: never, but say so
                raise BadRequest(f"The image from {src.server} is {img.fingerprint}, "
                                 f"not the {fp} it was listed as")
            self._store.image_sources.put(ImageSource(
                fp, fetcher.server, protocol, src.alias or src.fingerprint,
                src.certificate, cached, auto_update, self._now()))
            if cached:
                self._images.mark_used(fp)
            return self._images.get(fp, project=project)

    def record(self, fingerprint: str, src: InstanceSource, cached: bool) -> None:
        """Remember where an image pulled by another service (an OCI registry's)
        came from, for LXD's ``update_source`` and ``cached`` and the cache
        expiry; never auto-updated. Credentials (``secret``) are not kept."""
        self._store.image_sources.put(ImageSource(
            fingerprint, src.server, src.protocol, src.alias or src.fingerprint,
            src.certificate, cached, False, self._now()))

    def _here(self, fp: str, project: str) -> Image | None:
        with contextlib.suppress(NotFound):
            return self._images.get(fp, project=project)
        return None

    @staticmethod
    def _stream_image(fetcher: Fetcher, ref: str) -> simplestreams.StreamImage:
        """Raises: NotFound, BadRequest (see ``simplestreams.find_image``), RemoteError."""
        base = fetcher.base_path
        index = fetcher.get_json(f"{base}/{simplestreams.INDEX_PATH}")
        images: list[simplestreams.StreamImage] = []
        for path in simplestreams.index_paths(index):
            images += simplestreams.parse_products(fetcher.get_json(safe_join(base, path)))
        return simplestreams.find_image(images, ref, host_architecture())

    def _download_stream(self, fetcher: Fetcher, ss: simplestreams.StreamImage,
                         tmpdir: Path, limit: int, progress: Callable[[int], None]
                         ) -> tuple[Path, Path | None]:
        got: dict[str, Path] = {}
        done = 0
        for f in ss.files:
            dest = tmpdir / f"image-{f.kind}"
            base = done

            def step(n: int, base: int = base, size: int = f.size) -> None:
                progress(base + n)
                if n < size:  # a crash test's kill, with part of a file on disk
                    failpoint("image-pull.partial")

            remote_resume.download(fetcher, safe_join(fetcher.base_path, f.path), dest,
                                   downloads=self._downloads, sha256=f.sha256, size=f.size,
                                   limit=limit, progress=step)
            done += f.size
            got[f.kind] = dest
        if "combined" in got:
            return got["combined"], None
        return got["root"], got["meta"]

    def sweep(self, max_age: float = SWEEP_AGE) -> list[str]:
        """Startup: partial downloads nobody resumed for ``max_age`` seconds
        go (``remote_resume.sweep``). Never raises."""
        gone = remote_resume.sweep(self._downloads, max_age=max_age)
        if gone:
            log.info("image downloads: removed %d unfinished files", len(gone))
        return gone

    # -- the cache ---------------------------------------------------------------------
    def _auto_cached(self) -> bool:
        return self._config().get(AUTO_CACHED_KEY, "true").lower() in ("true", "1", "yes", "on")

    def prune_expired(self) -> list[str]:
        """Delete the cached images unused for ``images.remote_cache_expiry``
        days (LXD's ``pruneExpiredImages``: last use, else upload). Returns
        their fingerprints. Never raises for one image that fails."""
        days = _number(self._config(), EXPIRY_KEY, 10)
        if days <= 0:
            return []
        now = self._now()
        gone = []
        for src in self._store.image_sources.all():
            if not src.cached:
                continue
            img = self._images.find(src.fingerprint)
            if img is None:
                continue
            used = img.last_used_at or img.uploaded_at
            if used + days * _DAY > now:
                continue
            for project in self._store.projects.image_projects(src.fingerprint) or [DEFAULT]:
                try:
                    self._images.delete(src.fingerprint, project=project).wait()
                except CoveError as e:
                    log.info("expired cached image %s not removed: %s", src.fingerprint[:12], e)
            gone.append(src.fingerprint)
            log.info("removed cached image %s (unused for %s days)", src.fingerprint[:12], days)
        return gone

    def refresh(self, fingerprint: str, *, project: str = DEFAULT) -> Image | None:
        """Ask the image's server for its source alias again; when it names
        another image, pull that (same flags), move the aliases and delete
        this one. The new image, or None (no source, or nothing newer).

        Raises: BadRequest/NotFound (the server), as ``fetch``."""
        src = self._store.image_sources.get(fingerprint)
        if src is None or not src.alias:
            return None
        old = self._images.get(fingerprint, project=project)
        source = InstanceSource(type="image", server=src.server, protocol=src.protocol,
                                alias=src.alias, certificate=src.certificate)
        op = self._operations.run(
            lambda op: self.fetch(op, source, project=project, cached=src.cached,
                                  public=old.public, auto_update=src.auto_update),
            description="Updating image", resources={"images": [f"/1.0/images/{fingerprint}"]},
            project=project)
        op.wait()
        src.refreshed_at = self._now()  # tried: the next try an interval from now
        with contextlib.suppress(CoveError):
            self._store.image_sources.put(src)
        op.raise_for_error()
        new: Image = op.result
        if new.fingerprint == fingerprint:
            return None
        for a in old.aliases:
            self._images.update_alias(a.name, new.fingerprint, a.description, project=project)
        self._images.delete(fingerprint, project=project).wait()
        return new

    def refresh_due(self) -> int:
        """Refresh every ``auto_update`` image once ``images.auto_update_interval``
        hours passed since its last refresh. How many changed."""
        hours = _number(self._config(), INTERVAL_KEY, 6)
        if hours <= 0:
            return 0
        n = 0
        for src in self._store.image_sources.all():
            if not src.auto_update or src.refreshed_at + hours * 3600 > self._now():
                continue
            for project in self._store.projects.image_projects(src.fingerprint) or [DEFAULT]:
                try:
                    n += self.refresh(src.fingerprint, project=project) is not None
                except CoveError as e:
                    log.info("image %s not refreshed: %s", src.fingerprint[:12], e)
        return n

    def start(self, every: float | None = None) -> None:
        """Prune and refresh now and every ``every`` seconds, in a thread, until ``close``."""
        tick = every if every is not None else float(os.environ.get("COVE_IMAGE_TICK", "60"))

        def loop() -> None:
            while True:
                try:
                    self.prune_expired()
                    self.refresh_due()
                except Exception:  # keep the thread: the next round may succeed
                    log.exception("the image cache task failed")
                if self._stop.wait(tick):
                    return

        self._thread = threading.Thread(target=loop, name="cove-image-cache", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
