"""A real OCI registry for the tests: Debian's docker-registry (the CNCF distribution
reference registry) on 127.0.0.1, a free port, filesystem storage in a temporary
directory, optionally htpasswd basic auth with bcrypt entries."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

BINARY = "/usr/bin/docker-registry"
MISSING = f"{BINARY} is not installed (Debian package docker-registry; `bash .ci/install-registry` installs it)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bcrypt_htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd file with one bcrypt entry (htpasswd -B, else the bcrypt package)."""
    if shutil.which("htpasswd"):
        line = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True).stdout.strip()
    else:
        import bcrypt

        line = f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}"
    path.write_text(line + "\n")
    return path


class RegistryServer:
    """One registry process; stop() and start() again keep its storage and port."""

    def __init__(self, root: Path, htpasswd: Path | None = None) -> None:
        self.root = root
        self.storage = root / "storage"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.config = root / "config.yml"
        auth = f"auth: {{htpasswd: {{realm: inferc-test, path: {htpasswd}}}}}\n" if htpasswd else ""
        self.config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.storage}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: 127.0.0.1:{self.port}}}\n" + auth
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> RegistryServer:
        log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen([BINARY, "serve", str(self.config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}: {(self.root / 'registry.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:  # 401: up, with auth
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer on {self.host} within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def blob_data(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"

    def get(self, path: str, auth: tuple[str, str] | None = None, accept: str | None = None) -> tuple[int, bytes, dict]:
        """GET on the registry API (the tests' own look at what the registry holds)."""
        req = urllib.request.Request(f"http://{self.host}{path}")
        if accept:
            req.add_header("Accept", accept)
        if auth:
            import base64

            req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)
