"""Redis Lua scripts with named keys and arguments. A script's source says `$name`; the script
declares which names are KEYS and which ARGV, in order, and `values` builds both lists from a
mapping of names, so no caller counts positions. Scripts add up (`first + second`): the parts
run one after another as one atomic script, each part's names declared once, and a later part
may read an earlier part's names (and its Lua locals)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Template
from typing import Any


@dataclass(frozen=True, slots=True)
class Lua:
    source: str
    keys: tuple[str, ...] = ()
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = (*self.keys, *self.args)
        if len(set(names)) != len(names):
            raise ValueError(f"a name is declared twice: {names}")

    def __add__(self, other: Lua) -> Lua:
        return Lua(
            self.source.rstrip("\n") + "\n" + other.source,
            (*self.keys, *other.keys),
            (*self.args, *other.args),
        )

    @property
    def text(self) -> str:
        """The Lua Redis runs: each name replaced by its KEYS[i] or ARGV[i]. A name the source
        uses but no part declares is an error here, not a nil in Redis."""
        places = {name: f"KEYS[{i}]" for i, name in enumerate(self.keys, 1)}
        places.update({name: f"ARGV[{i}]" for i, name in enumerate(self.args, 1)})
        template = Template(self.source)
        unused = set(places) - set(template.get_identifiers())
        if unused:
            raise ValueError(f"declared but never used: {sorted(unused)}")
        return template.substitute(places)

    def values(self, given: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV, in the declared order, from every declared name's value. It runs on
        every event published, so the names are compared only when the values do not fit."""
        if len(given) == len(self.keys) + len(self.args):
            try:
                return [given[name] for name in self.keys], [given[name] for name in self.args]
            except KeyError:
                pass
        missing = [name for name in (*self.keys, *self.args) if name not in given]
        extra = set(given) - {*self.keys, *self.args}
        raise ValueError(f"missing {missing}, unknown {sorted(extra)}")


Part = tuple[Lua, Mapping[str, Any]]
"""A part of a script with its values: a prelude or an epilogue of a domain's."""
