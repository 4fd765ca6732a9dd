"""Option values the subcommands share."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

from harness.errors import UsageError

T = TypeVar("T")


def names(values: list[str] | None, flag: str) -> list[str] | None:
    """``--models a,b --models c`` -> [a, b, c]; None when not given; UsageError when
    given but naming nothing (``--models ''`` is not "all")."""
    if values is None:
        return None
    found = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not found:
        given = " ".join(map(repr, values))
        raise UsageError(f"{flag} {given} names nothing; leave {flag} out for all")
    return found


def from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """A dataclass of a command's options: each field from ``given`` where it is there,
    else from the option of the same name, else its default; no field copied by hand."""
    values = {
        f.name: given[f.name] if f.name in given else getattr(args, f.name)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in given or hasattr(args, f.name)
    }
    return cls(**values)
