"""Desired vs. observed -> the smallest transaction that makes them equal.

Pure functions over `model` data, shared by full sync, drift checks and tests.

Never flushing what carries traffic: elements are diffed one by one; a chain
whose rules differ is flushed and rewritten *in the same batch* (no packet sees
it half-written, and conntrack state is untouched). Only a declaration we cannot
change in place - a set's type, a chain's hook, an object we did not create - makes
us delete and recreate the whole table, again inside one batch.
"""

from __future__ import annotations

from collections.abc import Mapping

from datapath.nftables import render
from datapath.nftables.elements import Elements
from datapath.nftables.model import Element, Kind, ObservedTable, Op, Verb
from datapath.nftables.ruleset import CHAINS, SETS


def element_diff(set_name: str, want: Mapping[str, Element],
                 have: Mapping[str, Element]) -> tuple[list[Op], list[Op]]:
    """(deletes, adds) turning `have` into `want`. A changed value or comment is a
    delete plus an add: `add element` on an existing key keeps the old comment."""
    deletes = [k for k, el in have.items() if want.get(k) != el]
    adds = [el for k, el in want.items() if have.get(k) != el]
    return (render.element_ops(set_name, Verb.DELETE, (have[k] for k in sorted(deletes))),
            render.element_ops(set_name, Verb.ADD, sorted(adds)))


def structure_problems(observed: ObservedTable | None) -> tuple[list[str], bool]:
    """What is wrong with the table's declarations, and whether it needs recreating."""
    if observed is None:
        return ["table missing"], False
    problems: list[str] = []
    recreate = False
    for spec in SETS:
        have = observed.sets.get(spec.name)
        if have is None:
            problems.append(f"{spec.keyword} {spec.name} missing")
        elif have.decl != spec.decl_lines():
            problems.append(f"{spec.keyword} {spec.name} declared differently")
            recreate = True
    for chain in CHAINS:
        got = observed.chains.get(chain.name)
        if got is None:
            problems.append(f"chain {chain.name} missing")
        elif got.decl != chain.decl_lines():
            problems.append(f"chain {chain.name} declared differently")
            recreate = True
        elif got.rules != list(chain.rules):
            problems.append(f"chain {chain.name} rules differ")
    known_sets = {s.name for s in SETS}
    known_chains = {c.name for c in CHAINS}
    extra = [f"set {s}" for s in observed.sets if s not in known_sets]
    extra += [f"chain {c}" for c in observed.chains if c not in known_chains]
    extra += observed.other
    if extra:
        problems.append("objects we did not create: " + ", ".join(sorted(extra)))
        recreate = True
    return problems, recreate


def converge(desired: Elements, observed: ObservedTable | None) -> tuple[list[Op], list[str]]:
    """Operations that turn `observed` into skeleton + `desired`, and why."""
    problems, recreate = structure_problems(observed)
    ops: list[Op] = []
    if recreate and observed is not None:
        ops.append(Op(Verb.DELETE, Kind.TABLE))
        observed = None
    if observed is None:
        ops += render.skeleton_ops()
        observed = ObservedTable()
    else:
        for spec in SETS:
            if spec.name not in observed.sets:
                ops.append(render.set_op(spec))
        for chain in CHAINS:
            got = observed.chains.get(chain.name)
            if got is None:
                ops += render.chain_ops(chain)
            elif got.rules != list(chain.rules):
                ops += render.chain_ops(chain, flush=True)
    deletes: list[Op] = []
    adds: list[Op] = []
    for spec in SETS:
        have = observed.sets[spec.name].elements if spec.name in observed.sets else {}
        want = desired.get(spec.name, {})
        d, a = element_diff(spec.name, want, have)
        deletes += d
        adds += a
        if d or a:
            problems.append(f"{spec.name}: {len(d)} stale, {len(a)} missing elements")
    return ops + deletes + adds, problems
