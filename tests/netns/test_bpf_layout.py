"""The ctypes mirrors (datapath/ebpf/structs.py) against the C structs, by clang.

For every mirrored struct, generated `_Static_assert`s on size, offset and
width of each field are compiled together with the real headers of bpf/lib;
a mismatch is a compile error. A control assertion that must fail proves the
check is live. The pinned maps' key and value sizes are checked on every open
(datapath/ebpf/maps.PinnedMap), which the program tests exercise.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from datapath.ebpf import loader
from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from tests.netns.conformance import ebpf_bpffs

pytestmark = pytest.mark.privileged


def _asserts(wrong: bool = False) -> str:
    lines = ['#include "lib/icmp.h"']
    for cname, (mirror, size) in s.LAYOUTS.items():
        lines.append(f"_Static_assert(sizeof(struct {cname}) == {size + int(wrong)}, "
                     f'"{cname} size");')
        for spec in mirror._fields_:
            field, ctype = spec[0], spec[1]
            off = getattr(mirror, field).offset
            width = ctypes.sizeof(ctype)
            lines.append(f"_Static_assert(offsetof(struct {cname}, {field}) == {off} && "
                         f"sizeof(((struct {cname} *)0)->{field}) == {width}, "
                         f'"{cname}.{field}");')
    return "\n".join(lines) + "\nint gn_layout(struct __sk_buff *skb) { return 0; }\n"


def _compile(text: str, tmp: str) -> None:
    from bcc import BPF

    pins = n.PinLayout(ebpf_bpffs(), tmp)
    (pins.root / "maps").mkdir(parents=True, exist_ok=True)
    try:
        BPF(text=loader.render_text(text, Path("layout.c")).encode(),
            cflags=[*n.defines(pins), f"-I{n.BPF_DIR}"]).cleanup()
    finally:
        for p in sorted(pins.root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        if pins.root.exists():
            pins.root.rmdir()


def test_ctypes_mirrors_match_the_c_structs() -> None:
    _compile(_asserts(), "layout-ok")


def test_a_wrong_layout_fails_to_compile() -> None:
    with pytest.raises(Exception, match=r"[Ff]ailed to compile"):
        _compile(_asserts(wrong=True), "layout-wrong")
