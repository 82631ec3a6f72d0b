"""Plain data shared by the nftables modules: elements, operations, declarations.

A transaction is a list of `Op`s; the real client renders it to nft's native
syntax and commits it as one netlink batch, the fake applies it to a model. Set
and chain declarations are written in exactly the canonical form `nft list`
prints, so comparing what the kernel holds with what we want is string equality
(a privileged test checks the round trip).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from datapath.nftables import names


def quote(text: str) -> str:
    """An nft comment literal: no quotes or newlines inside, at most 128 bytes."""
    clean = text.replace('"', "'").replace("\n", " ").replace("\\", "/")
    data = clean.encode()[: names.COMMENT_MAX - 1]
    return '"' + data.decode(errors="ignore") + '"'


class Element(NamedTuple):
    """One set or map element. `value` is empty for sets; `comment` names the owner.

    A NamedTuple, not a dataclass: 100,000 of them are built, hashed and compared
    on a full sync, and tuples do that in C."""

    key: str
    value: str = ""
    comment: str = ""

    def text(self) -> str:
        out = self.key
        if self.comment:
            out += f" comment {quote(self.comment)}"
        if self.value:
            out += f" : {self.value}"
        return out


@dataclass(frozen=True)
class SetSpec:
    """A named set or map of our table."""

    name: str
    key_type: str
    comment: str
    data_type: str = ""  # maps only; "interval ipv4_addr" for address-range data
    interval: bool = False  # keys are prefixes/ranges

    @property
    def is_map(self) -> bool:
        return bool(self.data_type)

    @property
    def keyword(self) -> str:
        return "map" if self.is_map else "set"

    def decl_lines(self) -> list[str]:
        """The declaration as `nft list` prints it, one statement per line."""
        lines = [f"type {self.key_type} : {self.data_type}" if self.is_map
                 else f"type {self.key_type}"]
        if self.interval:
            lines.append("flags interval")
        lines.append(f"comment {quote(self.comment)}")
        return lines


@dataclass(frozen=True)
class ChainSpec:
    """A base chain of our table with its rules (each rule carries its comment)."""

    name: str
    type: str
    hook: str
    priority: str
    comment: str
    rules: tuple[str, ...] = ()

    def decl_lines(self) -> list[str]:
        return [
            f"comment {quote(self.comment)}",
            f"type {self.type} hook {self.hook} priority {self.priority}; policy accept;",
        ]


class Verb(enum.Enum):
    ADD = "add"
    DELETE = "delete"
    FLUSH = "flush"


class Kind(enum.Enum):
    TABLE = "table"
    SET = "set"
    CHAIN = "chain"
    RULE = "rule"
    ELEMENT = "element"


@dataclass(frozen=True)
class Op:
    """One operation of a transaction (counted one each, like knftables)."""

    verb: Verb
    kind: Kind
    name: str = ""  # set or chain name
    set_spec: SetSpec | None = None
    chain_spec: ChainSpec | None = None
    rule: str = ""
    element: Element | None = None


@dataclass
class ObservedSet:
    """A set as read back from the kernel."""

    decl: list[str]
    elements: dict[str, Element] = field(default_factory=dict)


@dataclass
class ObservedChain:
    """A chain as read back from the kernel: declaration lines and rule lines."""

    decl: list[str]
    rules: list[str] = field(default_factory=list)


@dataclass
class ObservedTable:
    """Our table as the kernel holds it (None of these means: no table)."""

    sets: dict[str, ObservedSet] = field(default_factory=dict)
    chains: dict[str, ObservedChain] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)  # objects we never create (flowtables...)


class NftError(RuntimeError):
    """libnftables refused a command; the kernel rolled the whole batch back."""
