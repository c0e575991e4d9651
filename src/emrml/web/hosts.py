"""Which ``Host`` a server without authentication (``emrml serve --no-auth``) answers: DNS rebinding.

Without SigV4 every request is the account's root. A browser keeps a page of another site from sending
the API's ``X-Amz-Target`` header to this server, unless that site's name is made to resolve to this
server's address after the page loaded (DNS rebinding): the page is then of the same origin as the server
and may call every operation — read statistics of the data, delete every object — from the browser of
anyone on this machine who opens it. Its requests carry the other site's name as ``Host``, so such a
server answers only a ``Host`` that is an IP address, ``localhost`` (or a name below it) or the host of
its ``public_url``; a client sending no ``Host`` (HTTP/1.0) is no browser and is answered.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from emrml.errors import MissingAuthenticationTokenException


def host_name(host: str) -> str:
    """The name of a ``Host`` header's value: without its port and brackets, in lower case, without the
    trailing dot of a fully qualified name."""
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host[1:]
    else:
        name, colon, port = host.rpartition(":")
        if not colon or not port.isdigit():
            name = host
    return name.strip().lower().rstrip(".")


class LocalHosts:
    """The ``Host`` check of a server without authentication whose clients use ``public_url``."""

    def __init__(self, public_url: str) -> None:
        self.public = (urlsplit(public_url).hostname or "").lower().rstrip(".")
        # Decisions by header value: a client sends the same Host with every request.
        self.allowed = functools.lru_cache(maxsize=64)(self._allowed)

    def _allowed(self, host: str) -> bool:
        name = host_name(host)
        if name in (self.public, "localhost") or name.endswith(".localhost"):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True  # an address: no name to rebind

    def check(self, host: str | None) -> None:
        """Refuse a request whose ``Host`` names another site (see the module's docstring)."""
        if host is None or self.allowed(host):
            return
        raise MissingAuthenticationTokenException(
            f"Host {host[:100]!r} is not this server's: with authentication off (--no-auth) only requests "
            f"to localhost, an IP address or the host of the public URL ({self.public or 'none'}) are "
            "answered, so that a web page of another site cannot reach the server through DNS rebinding; "
            "set --public-url to the name clients use, or turn authentication on"
        )
