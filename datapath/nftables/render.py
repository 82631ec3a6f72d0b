"""Operations -> one nft script, committed by libnftables as one netlink batch.

Why nft's native syntax and not the JSON API: libnftables 1.0.6 (Debian 12)
cannot express `interval` map data in JSON (a `snat to` address range; it
answers "Value must be a singleton") and silently drops table, chain and set
comments given in JSON. The native syntax through the same libnftables context
is just as atomic: every command of one buffer goes into a single batch, and
any error aborts all of it. Reading back needs neither: `kernel` dumps elements
over netlink and, unless a netlink digest vouches for them, parses the
declarations and rules from nft's terse text listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby

from datapath.nftables import names
from datapath.nftables.model import ChainSpec, Element, Kind, Op, SetSpec, Verb, quote
from datapath.nftables.ruleset import CHAINS, SETS

_T = f"{names.FAMILY} {names.TABLE}"


def table_ops() -> list[Op]:
    return [Op(Verb.ADD, Kind.TABLE)]


def set_op(spec: SetSpec) -> Op:
    return Op(Verb.ADD, Kind.SET, spec.name, set_spec=spec)


def chain_ops(spec: ChainSpec, *, flush: bool = False) -> list[Op]:
    """Declare a chain and (re)write its rules; `flush` empties it first, in the
    same batch, so no packet ever sees the chain half-written."""
    ops = [Op(Verb.ADD, Kind.CHAIN, spec.name, chain_spec=spec)]
    if flush:
        ops.append(Op(Verb.FLUSH, Kind.CHAIN, spec.name))
    ops += [Op(Verb.ADD, Kind.RULE, spec.name, rule=r) for r in spec.rules]
    return ops


def skeleton_ops() -> list[Op]:
    """Table, sets and chains with rules, for an empty kernel."""
    ops = table_ops() + [set_op(s) for s in SETS]
    for c in CHAINS:
        ops += chain_ops(c)
    return ops


def element_ops(set_name: str, verb: Verb, elements: Iterable[Element]) -> list[Op]:
    return [Op(verb, Kind.ELEMENT, set_name, element=e) for e in elements]


def _set_body(spec: SetSpec) -> str:
    return "{ " + "; ".join(spec.decl_lines()) + "; }"


def _chain_body(spec: ChainSpec) -> str:
    return (f"{{ type {spec.type} hook {spec.hook} priority {spec.priority}; "
            f"policy accept; comment {quote(spec.comment)}; }}")


def _element_group(verb: Verb, set_name: str, ops: list[Op]) -> str:
    if verb is Verb.DELETE:
        items = [op.element.key for op in ops if op.element]
    else:
        items = [op.element.text() for op in ops if op.element]
    return f"{verb.value} element {_T} {set_name} {{ " + ", ".join(items) + " }"


def render(ops: Sequence[Op]) -> str:
    """The script for `ops`, consecutive element ops on one set merged into one command."""
    lines: list[str] = []
    for (verb, kind, name), group in groupby(ops, key=lambda o: (o.verb, o.kind, o.name)):
        batch = list(group)
        if kind is Kind.ELEMENT:
            lines.append(_element_group(verb, name, batch))
            continue
        for op in batch:
            lines.append(_render_one(op))
    return "\n".join(lines) + "\n"


def _render_one(op: Op) -> str:
    if op.kind is Kind.TABLE:
        if op.verb is Verb.ADD:
            return f"add table {_T} {{ comment {quote(names.TABLE_COMMENT)}; }}"
        return f"{op.verb.value} table {_T}"
    if op.kind is Kind.SET:
        keyword = op.set_spec.keyword if op.set_spec else "set"
        if op.verb is Verb.ADD and op.set_spec:
            return f"add {keyword} {_T} {op.name} {_set_body(op.set_spec)}"
        return f"{op.verb.value} {keyword} {_T} {op.name}"
    if op.kind is Kind.CHAIN:
        if op.verb is Verb.ADD and op.chain_spec:
            return f"add chain {_T} {op.name} {_chain_body(op.chain_spec)}"
        return f"{op.verb.value} chain {_T} {op.name}"
    if op.kind is Kind.RULE:
        return f"add rule {_T} {op.name} {op.rule}"
    raise ValueError(f"cannot render {op}")
