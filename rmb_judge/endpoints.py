"""Endpoints: the URL a judge's answers come from, as recorded and shown, and whether it
can be reached at all.

A recorded endpoint is `scheme://host[:port]/path`: never the user name, password, query
string or fragment of the URL it came from (a `?key=...` or `user:token@` must not reach the
cache, the run folder or a message). The cache keeps the endpoint of every answer, so an
answer from a local server is never served to a run against the official API.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
import ssl
import urllib.request
from urllib.parse import urlsplit

# Where each SDK sends requests when neither --base-url nor its *_BASE_URL variable is set.
# Cache rows written before endpoints were recorded are attributed to these.
OFFICIAL = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
LOCAL = "local"  # the offline mock judge: answers made in-process

PROBE_TIMEOUT = 10.0


@functools.lru_cache(maxsize=256)  # read for every answer kept
def normalize(url: str, bare_path: str = "") -> str:
    """`scheme://host[:port]/path` of `url`, without credentials, query or fragment; the
    default port and a trailing slash are dropped so equal endpoints compare equal. A URL
    with no path gets `bare_path`: where its API lives when only the host is given (the
    provider's `api_path`)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return _stripped(url.strip())
    if not parts.scheme or not parts.hostname:
        return strip_secrets(url.strip())
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/') or bare_path}"


KEYS_ELSEWHERE = "the API key goes in the provider's key variable"


def problem(url: str, why_no_secrets: str = KEYS_ELSEWHERE) -> str | None:
    """What makes `url` unusable as a base URL, in words, or None. Credentials and query
    strings are refused (`why_no_secrets` says why): paths are added after a base URL, and
    the SDKs take keys from variables."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # an unclosed IPv6 bracket
        return f"is not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// URL"
    try:
        _ = parts.port  # (reading it checks it)
    except ValueError:
        return "has no valid port"
    if not parts.hostname:
        return "has no host"
    if parts.username or parts.password or parts.query or parts.fragment or "@" in parts.netloc:
        return f"must hold no credentials or query string ({why_no_secrets})"
    return None


URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def strip_secrets(text: str) -> str:
    """`text` with every URL in it reduced to what `normalize` keeps (one that cannot be read
    loses everything after its host part)."""
    return URL.sub(lambda m: _stripped(m.group(0)), text)


def _stripped(url: str) -> str:
    try:
        readable = urlsplit(url).hostname is not None
    except ValueError:
        return re.sub(r"(://)[^/]*@", r"\1", url).split("?")[0].split("#")[0]
    return normalize(url) if readable else url


def proxied(url: str) -> bool:
    """True when the environment sends `url` through a proxy (HTTPS_PROXY and friends), so
    a direct connection says nothing about whether the SDK can reach it."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(parts.scheme.lower())) and not urllib.request.proxy_bypass(parts.hostname or "")


async def unreachable(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why `url`'s host cannot be reached (DNS, refused connection, TLS), or None when a
    connection (and for https a TLS handshake) succeeds. Sends no HTTP request."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host or parts.scheme not in ("http", "https") or proxied(url):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"{normalize(url)}: the URL has no valid port"
    context = ssl.create_default_context() if parts.scheme == "https" else None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host if context else None),
            timeout,
        )
    except socket.gaierror as exc:
        return f"cannot resolve host {host} ({exc.strerror or exc})"
    except ssl.SSLError as exc:
        return f"TLS handshake with {host}:{port} failed ({exc.reason or exc})"
    except ConnectionRefusedError:
        return f"connection to {host}:{port} refused"
    except TimeoutError:
        return f"no connection to {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or exc})"
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
    return None
