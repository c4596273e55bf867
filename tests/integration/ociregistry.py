"""A real registry on loopback for tests and bench/oci.py: Debian's
``docker-registry`` (the Distribution registry) with TLS from a CA made
here and htpasswd basic auth, and test images pushed to it with ``skopeo``
from OCI layouts built here (several layers, an index with two
architectures, a zstd layer, Docker schema 2).

``docker-registry``, ``skopeo`` and ``htpasswd`` (apache2-utils) are
installed with apt-get the first time they are needed, as the conformance
suite installs LXD; without apt-get the tests that need them skip.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

PACKAGES = {"docker-registry": "docker-registry", "skopeo": "skopeo",
            "htpasswd": "apache2-utils"}
USER, PASSWORD = "covetest", "covetest-pw"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def ensure_tools() -> None:
    """Install what is missing (apt-get), or skip."""
    missing = [pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{' '.join(missing)} missing and apt-get cannot install them here")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = None
    for argv in (["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                 ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1200,
                           stdin=subprocess.DEVNULL, check=False)
        if argv[1] == "install" and p.returncode == 0:
            return
    tail = " | ".join(((p.stderr or p.stdout) if p else "").strip().splitlines()[-3:])
    pytest.skip(f"apt-get install {' '.join(missing)} failed: {tail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca_and_cert(d: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it:
    (ca.crt, server.crt, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "covetest CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.crt").write_bytes(ca.public_bytes(pem))
    (d / "server.crt").write_bytes(cert.public_bytes(pem))
    (d / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return d / "ca.crt", d / "server.crt", d / "server.key"


class RealRegistry:
    """``docker-registry serve`` on 127.0.0.1:PORT with TLS and htpasswd auth."""

    def __init__(self, d: Path) -> None:
        ensure_tools()
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.ca, crt, key = make_ca_and_cert(d)
        htpasswd = d / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True,
                       capture_output=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"https://{self.host}"
        config = {
            "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(d / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host, "tls": {"certificate": str(crt), "key": str(key)}},
            "auth": {"htpasswd": {"realm": "covetest", "path": str(htpasswd)}},
        }
        (d / "config.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
        # skopeo reads a CA for a host from a directory of *.crt
        self.cert_dir = d / "certs"
        self.cert_dir.mkdir(exist_ok=True)
        shutil.copy(self.ca, self.cert_dir / "ca.crt")
        self.log = open(d / "registry.log", "wb")  # noqa: SIM115 - kept open while it runs
        self.proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/v2/", context=ctx, timeout=2)
                return
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                log = (self.dir / "registry.log").read_text()[-2000:]
                raise RuntimeError(f"docker-registry did not start: {log}")
            time.sleep(0.05)

    def skopeo_push(self, layout: Path, tag: str, repo: str, *, all_: bool = True,
                    fmt: str = "") -> None:
        """Copy ``oci:layout:tag`` to ``repo`` here (``fmt`` v2s2: Docker schema 2)."""
        argv = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-creds",
                f"{USER}:{PASSWORD}", "--dest-cert-dir", str(self.cert_dir)]
        if all_:
            argv.append("--all")
        if fmt:
            argv += ["--format", fmt]
        argv += [f"oci:{layout}:{tag}", f"docker://{self.host}/{repo}"]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def skopeo(self, *args: str) -> str:
        argv = ["skopeo", "--insecure-policy", *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True,
                              timeout=120).stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# -- OCI layouts built here ----------------------------------------------------------------

def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes | None]) -> bytes:
    """A layer's tar: a file per entry (``None``: a directory), fixed times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class LayoutBuilder:
    """Writes blobs, manifests and an index into an OCI layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index: list[dict[str, Any]] = []

    def blob(self, data: bytes, media: str) -> dict[str, Any]:
        d = _digest(data)
        (self.root / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return {"mediaType": media, "digest": d, "size": len(data)}

    def layer(self, files: dict[str, bytes | None], *, zstd: bool = False) -> tuple[
            dict[str, Any], str]:
        """(descriptor, diff_id) of a gzip (or zstd) layer of ``files``."""
        raw = tar_of(files)
        if zstd:
            data = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True,
                                  check=True).stdout
            return self.blob(data, LAYER_ZSTD), _digest(raw)
        return self.blob(gzip.compress(raw, mtime=0), LAYER_GZIP), _digest(raw)

    def image(self, layers: list[tuple[dict[str, Any], str]], *, arch: str = "amd64",
              cmd: list[str] | None = None) -> dict[str, Any]:
        config = {"architecture": arch, "os": "linux",
                  "config": {"Cmd": cmd or ["/bin/sh"], "Env": ["PATH=/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}
        cdesc = self.blob(json.dumps(config).encode(), OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
                    "layers": [x for x, _ in layers]}
        return self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)

    def tag(self, desc: dict[str, Any], name: str) -> None:
        self.index.append({**desc, "annotations": {"org.opencontainers.image.ref.name": name}})
        (self.root / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "manifests": self.index}))

    def multi_arch(self, entries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {**desc, "platform": {"os": "linux", "architecture": arch}}
            for arch, desc in entries]}
        return self.blob(json.dumps(index).encode(), OCI_INDEX)


def busybox_files() -> dict[str, bytes | None]:
    """A base layer with the host's static busybox as /bin/sh (what a test can run)."""
    bb = Path("/bin/busybox").read_bytes()
    return {"bin": None, "bin/busybox": bb, "bin/sh": bb, "etc": None,
            "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n", "tmp": None}
