"""``connect``: the right client for a target, so agent code never changes.

A SQLite path or ``postgresql://`` URL opens the embedded library; an
``http(s)://`` URL opens the SDK client. Both are a ``DecisionGraphAPI``
(the return statements below are where mypy checks that they conform).
"""

from __future__ import annotations

import re
from typing import Any

from decisiongraph.api_protocol import DecisionGraphAPI
from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.facade import DecisionGraph
from decisiongraph.sdk.client import Client

#: ``host:port`` (or ``[v6]:port``) without a scheme: meant as a server, and
#: taken as a file name it would silently create a SQLite database so named.
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}(/.*)?$")

#: Options only the remote client takes: given for a local target they are a
#: sign the target is not what the caller meant.
_REMOTE_ONLY = ("api_key", "buffered", "spool_path", "retry", "max_batch", "flush_interval")


def connect(target: str, **options: Any) -> DecisionGraphAPI:
    """``DecisionGraph(target, **options)``, or ``Client(target, api_key, **options)``
    for an http(s) URL (``api_key=`` required; ``tenant=``, ``buffered=`` ...).

    Scheme matching ignores case (``HTTP://`` is a URL); a bare ``host:port``
    and remote-only options for a local target are refused with
    ``InvalidArgumentError`` rather than guessed at.
    """
    if not isinstance(target, str) or not target:
        raise InvalidArgumentError("target must be a path or a URL", details={"field": "target"})
    if target.lower().startswith(("http://", "https://")):
        api_key = options.pop("api_key", None)
        if not api_key:
            raise InvalidArgumentError(
                "An http(s) target needs api_key=...", details={"field": "api_key"}
            )
        scheme, rest = target.split("://", 1)
        remote: DecisionGraphAPI = Client(f"{scheme.lower()}://{rest}", api_key, **options)
        return remote
    if _HOST_PORT.match(target):
        raise InvalidArgumentError(
            f"{target!r} looks like a server address: use http://{target} "
            "(or a file name without a port to open a local database)",
            details={"field": "target"},
        )
    given = [name for name in _REMOTE_ONLY if name in options]
    if given:
        raise InvalidArgumentError(
            f"{', '.join(given)} only applies to an http(s):// server URL; "
            f"{target!r} is opened as a local database",
            details={"field": given[0]},
        )
    if target.lower().startswith(("postgresql://", "postgres://")):
        scheme, rest = target.split("://", 1)
        target = f"{scheme.lower()}://{rest}"
    embedded: DecisionGraphAPI = DecisionGraph(target, **options)
    return embedded
