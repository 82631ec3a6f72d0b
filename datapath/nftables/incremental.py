"""The ingress elements the current mappings want, kept up to date per change.

With 50,000 ingress mappings an update must cost a few milliseconds, so the
backend never recomputes the ingress elements of the whole intent on a partial
sync: `IngressIndex` remembers which mappings want each map element (a
multiset), so a change touches only its own keys, and a duplicate never deletes
an element another mapping still wants. Which mappings changed comes from
`globalnet.intent.sequence_delta`; whether the change is sound, from
`globalnet.intent_validator`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from datapath.nftables.elements import Elements, ingress_elements
from datapath.nftables.model import Element
from globalnet.intent import IngressMapping

Key = tuple[str, str]  # (set name, element key)


@dataclass
class IngressIndex:
    """Ingress elements wanted by the current mappings, with how many want each.

    Almost every key is wanted by exactly one element once (`single`); only
    duplicates or disagreements go to the multiset `multi`. Plain dicts keep a
    50,000-mapping build well under a second."""

    single: dict[Key, Element] = field(default_factory=dict)
    multi: dict[Key, Counter[Element]] = field(default_factory=dict)

    @classmethod
    def build(cls, mappings: Iterable[IngressMapping]) -> IngressIndex:
        index = cls()
        for m in mappings:
            index.add(m)
        return index

    def add(self, m: IngressMapping) -> list[Key]:
        touched = []
        for set_name, el in ingress_elements(m):
            key = (set_name, el.key)
            touched.append(key)
            if key in self.multi:
                self.multi[key][el] += 1
            elif key in self.single:
                self.multi[key] = Counter((self.single.pop(key), el))
            else:
                self.single[key] = el
        return touched

    def remove(self, m: IngressMapping) -> list[Key]:
        touched = []
        for set_name, el in ingress_elements(m):
            key = (set_name, el.key)
            if self.single.get(key) == el:
                del self.single[key]
            elif key in self.multi:
                wanted = self.multi[key]
                wanted[el] -= 1
                if wanted[el] <= 0:
                    del wanted[el]
                if sum(wanted.values()) == 1:
                    self.single[key] = next(iter(wanted))
                    del self.multi[key]
                elif not wanted:
                    del self.multi[key]
            else:
                continue
            touched.append(key)
        return touched

    def desired(self, key: Key) -> Element | None:
        """The element for a key; should two mappings disagree, the smallest wins
        (deterministic across restarts)."""
        if key in self.single:
            return self.single[key]
        wanted = self.multi.get(key)
        return min(wanted) if wanted else None

    def elements(self) -> Elements:
        out: Elements = {}
        for (set_name, k), el in self.single.items():
            out.setdefault(set_name, {})[k] = el
        for (set_name, k), wanted in self.multi.items():
            out.setdefault(set_name, {})[k] = min(wanted)
        return out
