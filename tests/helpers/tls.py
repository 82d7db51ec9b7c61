"""Certificates made in the test (``openssl`` CLI) and a Mosquitto with a TLS listener, a
password file and optionally an ACL file: the broker a production node talks to."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from tests.helpers.mqtt import MOSQUITTO, Broker, Collector, free_port

OPENSSL = shutil.which("openssl")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@dataclass
class Pki:
    """A CA, a broker certificate for 127.0.0.1/localhost and client certificates."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


def make_pki(directory: Path, clients: tuple[str, ...] = ("client",), ca_name: str = "ca") -> Pki:
    """A fresh CA in ``directory`` with a server certificate and one per client."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / f"{ca_name}.key", directory / f"{ca_name}.pem"
    _run(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
         "-subj", f"/CN=kapmonitor test {ca_name}")
    if ca_name != "ca":
        return Pki(directory)

    def issue(name: str, ext: str) -> None:
        key, csr = directory / f"{name}.key", directory / f"{name}.csr"
        pem = directory / f"{name}.pem"
        extfile = directory / f"{name}.ext"
        extfile.write_text(ext)
        _run(OPENSSL, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        _run(OPENSSL, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(pem), "-days", "2", "-extfile", str(extfile))

    issue("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    for client in clients:
        issue(client, "extendedKeyUsage=clientAuth\n")
    return Pki(directory)


class TlsBroker(Broker):
    """Mosquitto with one TLS listener (client certificates required), a password file, no
    anonymous clients and, when given, an ACL file."""

    def __init__(
        self, workdir: Path, pki: Pki, users: dict[str, str], acl: str | None = None
    ) -> None:
        super().__init__(workdir)
        passwd = workdir / "passwd"
        passwd.write_text("")
        for user, password in users.items():
            _run(MOSQUITTO_PASSWD, "-b", str(passwd), user, password)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"cafile {pki.ca}",
            f"certfile {pki.cert('server')}",
            f"keyfile {pki.key('server')}",
            "require_certificate true",
            "tls_version tlsv1.2",
            "allow_anonymous false",
            f"password_file {passwd}",
            "persistence false",
            f"user {getpass.getuser()}",
        ]
        if acl is not None:
            (workdir / "acl").write_text(acl)
            lines.append(f"acl_file {workdir / 'acl'}")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed")
        super().start()


def client_tls(pki: Pki, name: str | None) -> ssl.SSLContext:
    """A client context that trusts ``pki``'s CA, with ``name``'s certificate (None: none)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if name is not None:
        ctx.load_cert_chain(str(pki.cert(name)), str(pki.key(name)))
    return ctx


@contextlib.asynccontextmanager
async def tls_subscribe(
    broker: Broker, pki: Pki, name: str, password: str, topic: str
) -> AsyncIterator[Collector]:
    """Like :func:`tests.helpers.mqtt.subscribe`, over TLS with a certificate and password."""
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"test-{name}-{free_port()}", username=name,
        password=password, tls_context=client_tls(pki, name),
    ) as client:
        collector = Collector(client)
        await client.subscribe(topic, qos=1)
        task = asyncio.create_task(collector.run())
        try:
            yield collector
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
