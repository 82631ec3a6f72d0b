"""Pinned BPF maps and programs from Python: open by path, per-element access.

Through libbpf's syscall wrappers (Debian's libbpf1), with the ctypes mirrors of
structs.py as keys and values, so Python never needs the compiler to read or
write a map: a restarted agent adopts the pinned maps as they are. Every
change is one element (`update`/`delete`); nothing here can flush a map.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Generic, TypeVar

_lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
_lib.bpf_obj_get.argtypes = [ctypes.c_char_p]
_lib.bpf_obj_get.restype = ctypes.c_int
_lib.bpf_obj_pin.argtypes = [ctypes.c_int, ctypes.c_char_p]
_lib.bpf_obj_pin.restype = ctypes.c_int
for _name in ("bpf_map_lookup_elem", "bpf_map_get_next_key"):
    getattr(_lib, _name).argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    getattr(_lib, _name).restype = ctypes.c_int
_lib.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_uint64]
_lib.bpf_map_update_elem.restype = ctypes.c_int
_lib.bpf_map_delete_elem.argtypes = [ctypes.c_int, ctypes.c_void_p]
_lib.bpf_map_delete_elem.restype = ctypes.c_int
_lib.bpf_map_lookup_batch.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
_lib.bpf_map_lookup_batch.restype = ctypes.c_int

BPF_ANY, BPF_NOEXIST = 0, 1

K = TypeVar("K", bound=ctypes.Structure)
V = TypeVar("V", bound=ctypes.Structure)


def _check(ret: int, what: str) -> None:
    if ret < 0:
        err = -ret if ret < -1 else ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def obj_get(path: Path) -> int:
    """A new fd for the object pinned at `path` (OSError ENOENT when absent)."""
    fd = int(_lib.bpf_obj_get(str(path).encode()))
    _check(fd, f"open pinned {path}")
    return fd


def obj_pin(fd: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _check(int(_lib.bpf_obj_pin(fd, str(path).encode())), f"pin {path}")


def fdinfo(fd: int) -> dict[str, str]:
    """The kernel's description of a BPF fd (prog_id, prog_tag, map_id, key_size...)."""
    out: dict[str, str] = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


class PinnedMap(Generic[K, V]):
    """One pinned map with typed keys and values (the layout is checked on open)."""

    def __init__(self, path: Path, key: type[K], value: type[V]) -> None:
        self.path, self.key_type, self.value_type = path, key, value
        self.fd = obj_get(path)
        info = fdinfo(self.fd)
        sizes = (int(info["key_size"]), int(info["value_size"]))
        if sizes != (ctypes.sizeof(key), ctypes.sizeof(value)):
            os.close(self.fd)
            raise OSError(errno.EINVAL, f"{path}: key/value sizes {sizes} differ from "
                          f"{key.__name__}/{value.__name__}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def lookup(self, key: K) -> V | None:
        value = self.value_type()
        ret = int(_lib.bpf_map_lookup_elem(self.fd, ctypes.byref(key), ctypes.byref(value)))
        if ret < 0:
            if ctypes.get_errno() == errno.ENOENT or ret == -errno.ENOENT:
                return None
            _check(ret, f"lookup in {self.path.name}")
        return value

    def update(self, key: K, value: V, flags: int = BPF_ANY) -> None:
        _check(int(_lib.bpf_map_update_elem(self.fd, ctypes.byref(key), ctypes.byref(value),
                                            flags)), f"update {self.path.name}")

    def delete(self, key: K) -> bool:
        """Remove one element; False when it was not there."""
        ret = int(_lib.bpf_map_delete_elem(self.fd, ctypes.byref(key)))
        if ret < 0:
            if ctypes.get_errno() == errno.ENOENT or ret == -errno.ENOENT:
                return False
            _check(ret, f"delete from {self.path.name}")
        return True

    def read_array(self, size: int) -> list[V]:
        """Every value of an array map of `size` entries, index order, in one system
        call (BPF_MAP_LOOKUP_BATCH; element by element where the kernel lacks it)."""
        keys = (ctypes.c_uint32 * size)()
        values = (self.value_type * size)()
        count, token = ctypes.c_uint32(size), ctypes.c_uint32(0)
        ret = int(_lib.bpf_map_lookup_batch(self.fd, None, ctypes.byref(token), keys, values,
                                            ctypes.byref(count), None))
        err = -ret if ret < -1 else ctypes.get_errno()
        if ret == 0 or (err == errno.ENOENT and count.value == size):
            return list(values)
        out = []
        for i in range(size):
            v = self.lookup(self.key_type.from_buffer_copy(ctypes.c_uint32(i)))
            out.append(v if v is not None else self.value_type())
        return out

    def walk_keys(self) -> Iterator[K]:
        """Every key (a snapshot walk; entries may change while it runs)."""
        prev: K | None = None
        while True:
            nxt = self.key_type()
            ret = int(_lib.bpf_map_get_next_key(
                self.fd, None if prev is None else ctypes.byref(prev), ctypes.byref(nxt)))
            if ret < 0:
                return
            yield nxt
            prev = nxt

    def items(self) -> Iterator[tuple[K, V]]:
        for k in list(self.walk_keys()):
            v = self.lookup(k)
            if v is not None:
                yield k, v
