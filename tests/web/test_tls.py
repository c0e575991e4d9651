"""HTTPS and client certificates, with a throwaway CA made here: boto3 trusts it with ``verify=``."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, SSLError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from typer.testing import CliRunner
from web_helpers import SERVE_SCRIPT

from emrml import cli_server
from emrml.errors import InvalidInputException
from emrml.web.server import BackgroundServer, reserve_socket
from emrml.web.tls import TlsSettings

REFUSED = (SSLError, ConnectionClosedError, EndpointConnectionError)


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A client certificate signed by another CA.
    stranger_cert: Path
    stranger_key: Path


def _write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return key


def _certificate(
    path: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    usage: ExtendedKeyUsageOID | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = _write_key(folder / "ca.key")
    ca = (_certificate(folder / "ca.pem", "emrml test CA", ca_key, None), ca_key)
    other_key = _write_key(folder / "other-ca.key")
    other = (_certificate(folder / "other-ca.pem", "another CA", other_key, None), other_key)
    for name, issuer, usage in (
        ("server", ca, ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH),
        ("stranger", other, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        _certificate(folder / f"{name}.pem", name, _write_key(folder / f"{name}.key"), issuer, usage)
    return Pki(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
        folder / "stranger.pem",
        folder / "stranger.key",
    )


def _tls(pki: Pki, client_auth: str | None = None) -> TlsSettings:
    settings = TlsSettings.from_options(
        str(pki.server_cert), str(pki.server_key), str(pki.ca) if client_auth else None, client_auth
    )
    assert settings is not None
    return settings


def _client(url: str, credentials: dict[str, str], verify: Any, cert: tuple[Path, Path] | None = None) -> Any:
    config = Config(retries={"max_attempts": 1}, client_cert=tuple(map(str, cert)) if cert else None)
    return boto3.client(
        "machinelearning",
        endpoint_url=url,
        region_name="us-east-1",
        verify=verify,
        config=config,
        aws_access_key_id=credentials["aws_access_key_id"],
        aws_secret_access_key=credentials["aws_secret_access_key"],
    )


def _cookie_app() -> Starlette:
    async def login(_request: Any) -> PlainTextResponse:
        # As the console does under HTTPS: its own HSTS header, which must not be sent twice.
        response = PlainTextResponse("ok", headers={"strict-transport-security": "max-age=60"})
        response.set_cookie("session", "abc", httponly=True)
        response.set_cookie("theme", "dark", secure=True)
        return response

    return Starlette(routes=[Route("/login", login)])


@pytest.fixture
def cookie_server(pki: Pki, request: pytest.FixtureRequest) -> Iterator[str]:
    with BackgroundServer(_cookie_app(), reserve_socket(), tls=_tls(pki, request.param)) as server:
        yield server.url


def _get(url: str, pki: Pki, cert: tuple[Path, Path] | None = None) -> Any:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        context.load_cert_chain(*map(str, cert))
    return urlopen(url, context=context, timeout=30)


@pytest.mark.parametrize("cookie_server", [None], indirect=True)
def test_https_sends_hsts_and_makes_every_cookie_secure(cookie_server: str, pki: Pki) -> None:
    assert cookie_server.startswith("https://")
    with _get(cookie_server + "/login", pki) as response:
        assert response.headers.get_all("Strict-Transport-Security") == ["max-age=31536000"]
        cookies = response.headers.get_all("Set-Cookie")
    assert len(cookies) == 2 and all(
        cookie.count("; Secure") + cookie.count("; secure") == 1 for cookie in cookies
    )
    # Plain HTTP to the HTTPS port gets no answer, and a client that does not trust the CA refuses the server.
    with pytest.raises((URLError, ConnectionError, OSError)):
        urlopen(cookie_server.replace("https://", "http://") + "/login", timeout=30).read()
    with pytest.raises(URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urlopen(cookie_server + "/login", context=ssl.create_default_context(), timeout=30)


@pytest.mark.parametrize("cookie_server", ["optional"], indirect=True)
def test_optional_client_certificates_must_verify_when_sent(cookie_server: str, pki: Pki) -> None:
    with _get(cookie_server + "/login", pki) as response:
        assert response.status == 200
    with _get(cookie_server + "/login", pki, (pki.client_cert, pki.client_key)) as response:
        assert response.status == 200
    with pytest.raises((URLError, ssl.SSLError, ConnectionError)):
        _get(cookie_server + "/login", pki, (pki.stranger_cert, pki.stranger_key)).read()


def _wait_healthy(url: str, pki: Pki, process: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "emrml serve did not become healthy"
        try:
            with _get(url + "/health", pki, (pki.client_cert, pki.client_key)) as response:
                return json.loads(response.read())
        except (URLError, OSError):
            time.sleep(0.2)


def _raw_health(port: int, pki: Pki) -> bytes:
    """What the server answers a health check from a client with no certificate: nothing, or an alert."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                # TLS 1.3: the server's refusal arrives after the client's side of the handshake.
                return tls.recv(1024)
        except (ssl.SSLError, ConnectionError):
            return b""


def test_serve_requires_client_certificates_and_boto3_trusts_the_ca(tmp_path: Path, pki: Pki) -> None:
    sock = reserve_socket()
    port = sock.getsockname()[1]
    sock.close()
    options = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    options += ["--tls-client-ca", str(pki.ca), "--tls-client-auth", "required"]
    command = [sys.executable, "-c", SERVE_SCRIPT, "--home", str(tmp_path), "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers-jobs", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        assert _wait_healthy(url, pki, process)["status"] == "ok"
        credentials = json.loads((tmp_path / "admin-credentials.json").read_text())
        client = _client(url, credentials, str(pki.ca), (pki.client_cert, pki.client_key))
        assert client.describe_data_sources()["Results"] == []
        client.close()  # else its kept-alive connection holds up the server's graceful stop
        for refused in (
            _client(url, credentials, str(pki.ca)),  # no client certificate
            _client(url, credentials, str(pki.ca), (pki.stranger_cert, pki.stranger_key)),
            _client(url, credentials, True, (pki.client_cert, pki.client_key)),  # the CA is not trusted
        ):
            with pytest.raises(REFUSED):
                refused.describe_data_sources()
        assert _raw_health(port, pki) == b""
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert f"emrml API at {url}" in output and "HTTPS, client certificates required" in output
    assert f"--endpoint-url {url}" in output and "--ca-bundle CA.pem" in output


def test_bad_tls_options_are_refused_naming_the_option(pki: Pki, tmp_path: Path) -> None:
    cert, key, ca = str(pki.server_cert), str(pki.server_key), str(pki.ca)
    cases = [
        ((cert, None, None, None), "--tls-cert and --tls-key go together"),
        ((None, None, ca, None), "need --tls-cert and --tls-key"),
        ((cert, key, None, "required"), "--tls-client-auth required needs --tls-client-ca"),
        ((cert, key, ca, "sometimes"), "--tls-client-auth must be one of none, optional, required"),
        ((cert, str(tmp_path / "missing.key"), None, None), "--tls-key: no such file .*missing.key"),
        ((cert, str(pki.client_key), None, None), "the key does not match the certificate"),
        ((cert, key, str(pki.server_key), None), "--tls-client-ca .*not a readable PEM CA certificate"),
    ]
    for options, message in cases:
        with pytest.raises(InvalidInputException, match=message):
            TlsSettings.from_options(*options)
    assert TlsSettings.from_options(None, None, None, None) is None
    assert TlsSettings.from_options(cert, key, ca, None).client_auth == "required"  # type: ignore[union-attr]

    app = cli_server.typer.Typer()

    @app.callback()
    def main(home: Path = cli_server.typer.Option(..., "--home")) -> None:
        """emrml"""

    cli_server.register(app)
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "serve", "--tls-cert", cert])
    assert result.exit_code == 2 and "--tls-cert and --tls-key go together" in result.output
