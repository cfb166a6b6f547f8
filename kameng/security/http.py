"""An SSRF-safe HTTP client for calls to URLs that shops or operators typed in (upstream
suppliers, webhooks).

- HTTPS only (plain HTTP only when the operator allows it: UPSTREAM_ALLOW_HTTP);
- the host name is resolved once and every address is checked: loopback, private, link-local
  (169.254.169.254 …), carrier-grade NAT, multicast, reserved and unspecified addresses are
  refused before any connection, unless the operator allows private addresses
  (UPSTREAM_ALLOW_PRIVATE) — and the connection goes to the address that was checked, so a
  second DNS answer cannot swap it (DNS rebinding);
- redirects are never followed (a 3xx is returned as it is);
- short connect and total timeouts, and the response body is capped.
"""

from __future__ import annotations

import http.client
import ipaddress
import json as jsonlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import lazy_gettext as _l

from ..errors import DomainError

MAX_BODY = 1_000_000
CGNAT = ipaddress.ip_network("100.64.0.0/10")


class UnsafeURL(DomainError):
    """The URL may not be called (scheme, credentials, or an address inside the network)."""


class UpstreamError(Exception):
    """The call failed: connection refused, timeout, TLS, oversized or unreadable answer."""


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)

    def json(self):
        """The body as JSON, or UpstreamError for anything else."""
        try:
            return jsonlib.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise UpstreamError("the answer is not JSON") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _setting(name: str) -> bool:
    return bool(current_app.config.get(name))


def address_allowed(address: str) -> bool:
    """Whether an IP address outside the private ranges (or the operator allows those)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    inside = (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
              or ip.is_reserved or ip.is_unspecified
              or (isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT))
    return not inside or _setting("UPSTREAM_ALLOW_PRIVATE")


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of a URL that may be called, or UnsafeURL.

    Only the form of the URL: addresses are checked when it is called.
    """
    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:
        raise UnsafeURL(_l("The URL is not valid."), field="url") from None
    if parts.scheme not in ("https", "http"):
        raise UnsafeURL(_l("The URL must start with https://."), field="url")
    if parts.scheme == "http" and not _setting("UPSTREAM_ALLOW_HTTP"):
        raise UnsafeURL(_l("The URL must use https://."), field="url")
    if parts.username or parts.password:
        raise UnsafeURL(_l("The URL must not carry a user name or password."), field="url")
    if not parts.hostname:
        raise UnsafeURL(_l("The URL has no host."), field="url")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def resolve(host: str, port: int) -> str:
    """The first address of `host`, after checking every address it resolves to."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UpstreamError(f"cannot resolve {host}") from None
    addresses = [answer[4][0] for answer in answers]
    refused = [a for a in addresses if not address_allowed(a)]
    if refused or not addresses:
        shown = refused[0] if refused else "nothing"
        raise UnsafeURL(_l("%(host)s resolves to an address inside the network (%(shown)s); "
                           "calls there are not allowed.", host=host, shown=shown), field="url")
    return addresses[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address, with SNI and certificate checks for the host name."""

    def __init__(self, host, address, port, timeout, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host, address, port, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def safe_request(method: str, url: str, *, json=None, data: bytes | None = None,
                 headers: dict | None = None, connect_timeout: float = 3.0,
                 timeout: float = 10.0, max_body: int = MAX_BODY) -> Response:
    """Make one HTTP request to `url` within the rules above."""
    scheme, host, port, path = check_url(url)
    address = resolve(host, port)
    body = data
    send_headers = {"User-Agent": "Kameng/1", "Accept": "application/json, */*;q=0.5",
                    **(headers or {})}
    if json is not None:
        body = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
        send_headers.setdefault("Content-Type", "application/json")
    if scheme == "https":
        conn = _PinnedHTTPS(host, address, port, connect_timeout, ssl.create_default_context())
    else:
        conn = _PinnedHTTP(host, address, port, connect_timeout)
    deadline = time.monotonic() + timeout
    try:
        conn.connect()
        # Each blocking read waits at most what is left of the total; the loop below checks
        # the deadline between reads. (The socket cannot be touched after getresponse():
        # http.client closes it there when the server ends the connection.)
        conn.sock.settimeout(max(0.1, deadline - time.monotonic()))
        conn.request(method, path, body=body, headers=send_headers)
        answer = conn.getresponse()
        chunks, size = [], 0
        while True:
            if deadline - time.monotonic() <= 0:
                raise UpstreamError(f"{host} took longer than {timeout:g} s")
            chunk = answer.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_body:
                raise UpstreamError(f"the answer of {host} is larger than {max_body} bytes")
            chunks.append(chunk)
        return Response(answer.status, b"".join(chunks),
                        {k.lower(): v for k, v in answer.getheaders()})
    except TimeoutError:
        raise UpstreamError(f"{host} did not answer in time") from None
    except ssl.SSLError as error:
        raise UpstreamError(f"TLS with {host} failed: {error.reason or error}") from None
    except (OSError, http.client.HTTPException) as error:
        raise UpstreamError(f"calling {host} failed: {error}") from None
    finally:
        conn.close()
