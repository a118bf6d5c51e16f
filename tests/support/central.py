"""Real processes for central tests: `fedxray-central serve`, simulated workstations, Flower SuperNodes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fl.processes import FLOWER_ENV

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _stop(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


class CentralProcess:
    """`fedxray-central serve` in a home on free loopback ports, driven like IT would."""

    def __init__(self, home: Path, *, database_url: str | None = None, env: dict | None = None) -> None:
        self.home = Path(home)
        self.port = free_port()
        self.superlink_port = free_port()
        self.database_url = database_url
        self.env = {**os.environ, **FLOWER_ENV, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = self.home.parent / f"{self.home.name}-serve.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def fleet_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        return self.home / "pki" / "ca.crt"

    def credential(self, which: str) -> str:
        return (self.home / f"{which}.credential").read_text().strip()

    def command(self, *extra: str) -> list[str]:
        cmd = [str(BIN / "fedxray-central"), "serve", "--home", str(self.home), "--host", "127.0.0.1",
               "--port", str(self.port), "--superlink-port", str(self.superlink_port), *extra]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        return cmd  # fmt: skip

    def start(self, *extra: str, timeout: float = 120.0) -> CentralProcess:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(self.command(*extra), stdout=logfile, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)  # fmt: skip
        logfile.close()
        wait_for(self._healthy, timeout=timeout, what=f"the central to answer /health (log: {self.log})")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"fedxray-central serve exited with {self.proc.returncode}:\n{self.log_text()}")
        if not self.ca_cert.exists():
            return False
        try:
            r = httpx.get(f"{self.url}/health", verify=self.ssl_context(), timeout=5)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and r.json()["superlink"] == "up"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def stop(self, timeout: float = 30.0) -> int | None:
        return _stop(self.proc, timeout) if self.proc is not None else None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self, credential: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), headers=headers, timeout=60)

    def admin(self, *args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess:
        """Run an admin command (`fedxray-central ARGS --home HOME`), with `input_text` on its standard input."""
        result = subprocess.run([str(BIN / "fedxray-central"), *args, "--home", str(self.home)],
                                capture_output=True, text=True, env=self.env, timeout=120,
                                input=input_text, stdin=None if input_text is not None else subprocess.DEVNULL)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"fedxray-central {' '.join(args)} failed: {result.stderr}")
        return result

    def admin_json(self, *args: str):
        return json.loads(self.admin(*args, "--json").stdout)

    def create_token(self, site: str, expires: str = "1h") -> dict:
        return self.admin_json("token", "create", "--site", site, "--expires", expires)


class Workstation:
    """A simulated workstation: its own XDG config/data/cache folders; `fedxray` run as a subprocess."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = Path(root)
        self.name = name
        for d in ("config", "data", "cache"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    @property
    def config_dir(self) -> Path:
        return self.root / "config" / "fedxray"

    def env(self) -> dict[str, str]:
        return {**os.environ, **FLOWER_ENV, "XDG_CONFIG_HOME": str(self.root / "config"),
                "XDG_DATA_HOME": str(self.root / "data"), "XDG_CACHE_HOME": str(self.root / "cache")}  # fmt: skip

    def fedxray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "fedxray"), *args], capture_output=True, text=True, env=self.env(),
                              timeout=timeout)  # fmt: skip

    def enrollment(self) -> dict:
        return json.loads((self.config_dir / "central" / "enrollment.json").read_text())

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run Python code as this workstation (same XDG folders and keyring)."""
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env(),
                              timeout=timeout)  # fmt: skip

    def export_private_key(self, dest: Path) -> Path:
        """Write the SuperNode key from the keyring to `dest` (0600), as `fedxray federate` will."""
        code = (
            "import os, sys\n"
            "from app.core.enrollment import load_enrollment\n"
            "from app.core.keystore import SecretStore\n"
            "key = SecretStore().get(load_enrollment().private_key_name)\n"
            f"fd = os.open({str(dest)!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
            "os.write(fd, key.encode()); os.close(fd)\n"
        )
        result = self.python(code)
        assert result.returncode == 0, result.stderr
        return dest


class SuperNode:
    """`flower-supernode` with TLS and node authentication, logging to a file."""

    def __init__(self, *, superlink: str, root_cert: Path, key: Path | None, log: Path, patient: bool = False) -> None:
        """`patient` nodes retry for ever (to ride out a central restart); others give up after a minute."""
        self.log = log
        cmd = [str(BIN / "flower-supernode"), "--superlink", superlink, "--root-certificates", str(root_cert),
               "--port", str(free_port())]  # fmt: skip
        if not patient:
            cmd += ["--max-retries", "3", "--max-wait-time", "60"]
        if key is not None:
            cmd += ["--auth-supernode-private-key", str(key)]
        env = {**os.environ, **FLOWER_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        logfile = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        logfile.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def node_id(self) -> int | None:
        match = re.search(r"SuperNode ID: (\d+)", self.text())
        return int(match.group(1)) if match else None

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the SuperNode did not exit within {timeout:.0f} s:\n{self.text()[-2000:]}") from exc

    def stop(self) -> int | None:
        code = _stop(self.proc, 10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its SuperExec child
        return code


# ---------------------------------------------------------------- the dashboard in a real browser
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def spki_pin(cert: Path) -> str:
    """base64 SHA-256 of a certificate's public key: what Chromium's --ignore-certificate-errors-spki-list takes."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def dashboard_browser(central: CentralProcess, profile: Path, *, width: int = 1440, height: int = 900):
    """Debian's headless Chromium driven by Selenium through chromedriver (nothing is downloaded), trusting
    exactly this central's server key: the certificate check is waived for that one public key (an SPKI pin),
    so the loopback test needs no change to any system trust store. A fresh profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 f"--ignore-certificate-errors-spki-list={spki_pin(central.home / 'pki' / 'server.crt')}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
