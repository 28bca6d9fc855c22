"""Loopback ports and HTTP probes of the local cluster: is a port free, is the master ALIVE, does the
REST server answer. Only fixed ``http://127.0.0.1`` URLs are read, with the standard library."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

__all__ = ["HOST", "free_ports", "http_json", "port_in_use", "probe_master", "probe_rest"]

#: Every daemon binds here; deliberately not configurable (see the package warning).
HOST = "127.0.0.1"


def port_in_use(port: int) -> bool:
    """True if something listens on, or holds, ``HOST:port``.

    Both checks, because a bind test alone misses a wildcard listener on macOS (BSD lets a specific
    address bind next to ``0.0.0.0`` with SO_REUSEADDR, as the JVM does) and a connect test alone
    misses a bound-but-not-listening socket.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((HOST, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def http_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any] | None]:
    """GET ``url``; (status, parsed JSON body or None).  (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # only fixed http://127.0.0.1 URLs
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except (OSError, ValueError):
        return 0, None
    try:
        data = json.loads(body)
    except ValueError:
        return status, None
    return status, data if isinstance(data, dict) else None


def probe_master(ui_port: int, worker_ui_port: int | None = None) -> tuple[str | None, int]:
    """(master ``status`` from ``/json/``, number of ALIVE workers [with the given UI port])."""
    _, data = http_json(f"http://{HOST}:{ui_port}/json/")
    if not data:
        return None, 0
    workers = [w for w in data.get("workers", []) if isinstance(w, dict) and w.get("state") == "ALIVE"]
    if worker_ui_port is not None:
        workers = [w for w in workers if str(w.get("webuiaddress", "")).endswith(f":{worker_ui_port}")]
    return data.get("status"), len(workers)


def probe_rest(rest_port: int) -> bool:
    """Whether the REST server answers; ``readyz`` exists from Spark 4.0 (400 before: still up)."""
    status, data = http_json(f"http://{HOST}:{rest_port}/v1/submissions/readyz")
    if status == 200:
        return bool(data and data.get("success", True))
    return status == 400 and data is not None and data.get("action") == "ErrorResponse"
