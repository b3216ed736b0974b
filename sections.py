"""Building a subsystem's config dataclass from a plain dict, with one error style for every section.

Each subsystem keeps its own dataclass (``ModelConfig``, ``MappingConfig``,
``DynamicsConfig``, ``CalibConfig``, ...) in a light module; their
``from_dict`` all go through :func:`section_from_dict`, so an unknown key is
refused the same way everywhere, naming the nearest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, TypeVar

from fuse4d.errors import ConfigError

T = TypeVar("T")


def section_from_dict(cls: type[T], d: dict[str, Any] | None, section: str, tuples: bool = False) -> T:
    """``cls(**d)`` for a dataclass ``cls``; lists become tuples when ``tuples``.

    Raises:
        ConfigError: a key ``cls`` does not have (naming the nearest one), or a bad value.
    """
    d = dict(d or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        near = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.5)
        hint = f"; did you mean {section}.{near[0]}?" if near else f"; known: {', '.join(sorted(known))}"
        raise ConfigError(f"unknown {section} setting {section}.{unknown[0]}{hint}")
    if tuples:
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"{section}: {e}") from None
