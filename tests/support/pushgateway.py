"""A real Prometheus Pushgateway (Debian's `prometheus-pushgateway`) on a free loopback
port, kept in memory only (no `--persistence.file`), and what it exposes to Prometheus."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from support.net import LOOPBACK, free_port, wait_until

with warnings.catch_warnings():
    # The system's libcrypt makes the bcrypt hash the Pushgateway's basic auth wants;
    # the module that reaches it is deprecated (gone in Python 3.13), and no bcrypt
    # package is installed.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

BINARY = "prometheus-pushgateway"
PUSHGATEWAY_OWN = ("push_time_seconds", "push_failure_time_seconds")
"""What the Pushgateway adds to every group it holds."""


@dataclass(frozen=True)
class Pushgateway:
    """A running Pushgateway; `username`/`password` when it asks for basic auth."""

    port: int
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """Its base URL, without credentials."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        """Its base URL with `user:password@`, as PUSHGATEWAY_URL carries them."""
        return f"http://{self.username}:{self.password}@{LOOPBACK}:{self.port}"

    def _get(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            body: bytes = response.read()
            return body

    def samples(self) -> list[Sample]:
        """Every sample of `GET /metrics` that a flow pushed (not the Pushgateway's own
        metrics, nor its `push_time_seconds` bookkeeping), parsed as Prometheus does."""
        text = self._get("/metrics").decode()
        return [
            sample
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if "job" in sample.labels and sample.name not in PUSHGATEWAY_OWN
        ]

    def wipe(self) -> None:
        """Forget every group (the admin API, which the fixture turns on)."""
        self._get("/api/v1/admin/wipe", method="PUT")


@contextmanager
def pushgateway(username: str | None = None, password: str | None = None) -> Iterator[Pushgateway]:
    """A Pushgateway on a free loopback port, stopped on leaving; with `username` and
    `password`, one that takes only requests with that basic auth."""
    if shutil.which(BINARY) is None:
        raise RuntimeError(f"{BINARY} is not installed: `make tools` installs it")
    with tempfile.TemporaryDirectory(prefix="pushgateway-") as tmp:
        gateway = Pushgateway(free_port(), username, password)
        args = [
            BINARY,
            f"--web.listen-address={LOOPBACK}:{gateway.port}",
            "--web.enable-admin-api",
            "--log.level=warn",
        ]
        if username is not None and password is not None:
            args.append(f"--web.config.file={_web_config(Path(tmp), username, password)}")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:

            def ready() -> bool:
                if proc.poll() is not None:
                    stderr = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"{BINARY} exited with {proc.returncode}: {stderr}")
                return gateway._get("/-/ready") is not None

            wait_until(ready, timeout=20, what=f"{BINARY} on port {gateway.port}")
            yield gateway
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def _web_config(folder: Path, username: str, password: str) -> Path:
    """The exporter-toolkit web configuration asking for basic auth (a bcrypt hash, at
    the lowest cost bcrypt allows: this is a test's password)."""
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    path = folder / "web.yml"
    path.write_text(f"basic_auth_users:\n  {username}: '{hashed}'\n", encoding="utf-8")
    return path
