"""A quicker ``__init__`` for the frozen, slotted dataclasses built per event.

A frozen dataclass's generated ``__init__`` stores each field through
``object.__setattr__`` (the class's own ``__setattr__`` refuses), a global
lookup, an attribute lookup and a call per field. Events are built by the
hundred thousand: every append plans a :class:`StoredEvent` per event,
every catch-up decodes one per row, every HTTP batch parses envelopes. The
``__init__`` made here stores each field through its slot's descriptor,
which takes half the time (0.9 µs instead of 1.8 µs for a StoredEvent). The
instances are the same: same fields, defaults, keywords and immutability.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def fast_frozen_init(cls: type[T]) -> type[T]:
    """Give a frozen, slotted dataclass a quicker ``__init__`` (decorator,
    applied above ``@dataclass``).

    Only for the plain case: every field in ``__init__``, defaults but no
    default factories, no ``__post_init__``; anything else is refused here,
    at import, rather than built wrongly.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    namespace: dict[str, Any] = {}
    arguments: list[str] = []
    body: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not field.init or field.kw_only or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name} is not a plain init field")
        name = field.name
        if field.default is dataclasses.MISSING:
            arguments.append(name)
        else:
            namespace[f"_default_{name}"] = field.default
            arguments.append(f"{name}=_default_{name}")
        namespace[f"_set_{name}"] = vars(cls)[name].__set__
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(arguments)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # the way dataclasses builds its own __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = f"Build a {cls.__name__} (fields as declared)."
    type.__setattr__(cls, "__init__", init)
    return cls
