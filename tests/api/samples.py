"""Sample records for the wire tests: every field set, nothing empty or None."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

__all__ = ["sample"]


def sample(tp: Any, seed: int = 1) -> Any:
    """A value of type `tp` with every part filled in (nothing empty, nothing None)."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(
            **{
                f.name: sample(hints[f.name], seed + i)
                for i, f in enumerate(dataclasses.fields(tp))
            }
        )
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bytes:
        return bytes([seed % 256]) * 32
    if tp is str:
        return f"text-{seed}"
    if tp is bool:
        return seed % 2 == 0
    if tp is int:
        return 1000 + seed
    if tp is float:
        return seed + 0.25
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return (sample(args[0], seed), sample(args[0], seed + 1))
        return tuple(sample(a, seed + i) for i, a in enumerate(args))
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)), seed)
    raise AssertionError(f"no sample for {tp}")
