"""TLS for ``emrml serve``: HTTPS for the API and the console, client certificates (mTLS), HSTS.

``TlsSettings`` checks the certificate files once, at start, so a wrong path or a key that does not match
the certificate is a clear error rather than a failure on the first connection. uvicorn terminates TLS
with the options ``uvicorn_options`` gives it. ``SecureTransport`` wraps the app under TLS: every response
carries ``Strict-Transport-Security`` and every cookie, whoever sets it, is marked ``Secure``.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

from emrml.errors import InvalidInputException

#: ``--tls-client-auth``: whether a client must present a certificate signed by ``--tls-client-ca``.
CLIENT_AUTH = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
#: One year, as browsers' preload lists ask; not ``includeSubDomains``: the host may serve other things.
HSTS = b"max-age=31536000"


@dataclass(frozen=True)
class TlsSettings:
    """The server's certificate chain and key (PEM files), and how clients authenticate.

    ``client_auth`` "optional" asks for a client certificate and refuses one not signed by ``client_ca``;
    "required" also refuses a client without one (the TLS handshake fails).
    """

    cert: str
    key: str
    client_ca: str | None = None
    client_auth: str = "none"

    @classmethod
    def from_options(
        cls, cert: str | None, key: str | None, client_ca: str | None, client_auth: str | None
    ) -> TlsSettings | None:
        """The TLS settings the ``serve`` options describe (None: plain HTTP), checked and loadable."""
        if not cert and not key:
            if client_ca or client_auth:
                raise InvalidInputException(
                    "--tls-client-ca and --tls-client-auth need --tls-cert and --tls-key"
                )
            return None
        if not cert or not key:
            raise InvalidInputException("--tls-cert and --tls-key go together: give both PEM files")
        mode = client_auth or ("required" if client_ca else "none")
        if mode not in CLIENT_AUTH:
            raise InvalidInputException(
                f"--tls-client-auth must be one of {', '.join(CLIENT_AUTH)} (got {client_auth!r})"
            )
        if mode != "none" and not client_ca:
            raise InvalidInputException(
                f"--tls-client-auth {mode} needs --tls-client-ca: the CA that signs client certificates"
            )
        settings = cls(cert, key, client_ca or None, mode)
        settings.server_context()
        return settings

    def server_context(self) -> ssl.SSLContext:
        """The server side's SSL context; raises InvalidInputException naming the file that is wrong."""
        for option, path in (
            ("--tls-cert", self.cert),
            ("--tls-key", self.key),
            ("--tls-client-ca", self.client_ca),
        ):
            if path and not os.path.isfile(path):
                raise InvalidInputException(f"{option}: no such file {path}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise InvalidInputException(
                f"--tls-cert {self.cert} / --tls-key {self.key}: not a PEM certificate chain and its "
                f"private key, or the key does not match the certificate ({exc})"
            ) from None
        if self.client_ca:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except (ssl.SSLError, OSError) as exc:
                raise InvalidInputException(
                    f"--tls-client-ca {self.client_ca}: not a readable PEM CA certificate ({exc})"
                ) from None
        context.verify_mode = CLIENT_AUTH[self.client_auth]
        return context

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments of ``uvicorn.Config`` that serve HTTPS with these settings."""
        return {
            "ssl_certfile": self.cert,
            "ssl_keyfile": self.key,
            "ssl_ca_certs": self.client_ca,
            "ssl_cert_reqs": CLIENT_AUTH[self.client_auth],
        }


Scope = dict[str, Any]


class SecureTransport:
    """ASGI middleware for HTTPS: HSTS on every response, ``Secure`` on every cookie."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def secure(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                # One HSTS header, this one: an app behind it (the console) may have set its own.
                headers = [
                    (name, _secure_cookie(value) if name.lower() == b"set-cookie" else value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"strict-transport-security"
                ]
                headers.append((b"strict-transport-security", HSTS))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secure)


def _secure_cookie(value: bytes) -> bytes:
    attributes = {part.strip().split(b"=", 1)[0].lower() for part in value.split(b";")[1:]}
    return value if b"secure" in attributes else value + b"; Secure"
