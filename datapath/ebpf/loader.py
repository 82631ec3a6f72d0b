"""Build the programs of bpf/ with bcc and pin them; adopt a pinned build.

A build is named by a hash of every source file and of the `-D` configuration
(`build_id`), so a restarted agent finds the programs it would compile already
pinned under `progs/<build>/` and uses them as they are: no compile, no
reattach, no gap. Maps are declared pinned in the C sources
(`BPF_TABLE_PINNED`): the first build creates and pins them, later builds and
restarts reuse the pinned maps with their contents.

bcc cannot rewrite a map call whose map name comes from a macro ("cannot use
map function inside a macro"), so map names are not `-D` defines like the rest
of the configuration: `render_source` inlines the quoted includes of a program
(with `#line` markers, so compiler messages name the real file and line) and
replaces every `GN_MAP_<X>` token with the name `names.MAPS` gives it. The
names are still written once, in names.py.

A program the verifier refuses raises `ProgramLoadError` with a one-line
message (the full log goes to debug); nothing is pinned or attached then, so
the previous programs stay attached.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datapath.ebpf import maps
from datapath.ebpf import names as n

log = logging.getLogger(__name__)


class ProgramLoadError(RuntimeError):
    """bcc could not compile or the kernel refused a program (verifier, missing feature)."""


_INCLUDE = re.compile(r'^#include "(lib/[a-z_]+\.h)"\s*$')
_MAP_TOKEN = re.compile(r"\bGN_MAP_([A-Z_]+)\b")


def render_source(prog: str, bpf_dir: Path = n.BPF_DIR) -> str:
    """The text bcc compiles for `prog`: includes inlined, map names substituted."""
    path = bpf_dir / f"{prog}.c"
    return render_text(path.read_text(), path, bpf_dir)


def render_text(text: str, origin: Path, bpf_dir: Path = n.BPF_DIR) -> str:
    """`render_source` for any C text (`origin` names it in compiler messages)."""
    seen: set[Path] = set()

    def expand(path: Path, body: str) -> list[str]:
        out = [f'#line 1 "{path}"']
        for no, line in enumerate(body.splitlines(), start=1):
            m = _INCLUDE.match(line)
            if m is None:
                out.append(_MAP_TOKEN.sub(_map_name, line))
                continue
            inc = bpf_dir / m.group(1)
            if inc not in seen:
                seen.add(inc)
                out += expand(inc, inc.read_text())
            out.append(f'#line {no + 1} "{path}"')
        return out

    return "\n".join(expand(origin, text)) + "\n"


def _map_name(m: re.Match[str]) -> str:
    macro = m.group(1)
    if macro not in n.MAP:
        return m.group(0)  # GN_MAP_FLAGS and the like: ordinary macros
    return n.MAP[macro].name


def sources(bpf_dir: Path = n.BPF_DIR) -> list[Path]:
    return sorted([*bpf_dir.glob("*.c"), *(bpf_dir / "lib").glob("*.h")])


def build_id(pins: n.PinLayout, bpf_dir: Path = n.BPF_DIR) -> str:
    h = hashlib.sha256()
    for path in sources(bpf_dir):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for flag in n.defines(pins):
        h.update(flag.encode() + b"\0")
    return h.hexdigest()[:12]


@dataclass
class Programs:
    """Open fds of one build's programs (program name -> fd), pinned under `build`."""

    build: str
    fds: dict[str, int]

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = {}


def adopt(pins: n.PinLayout, build: str) -> Programs | None:
    """The pinned programs of `build`, or None when any is missing."""
    fds: dict[str, int] = {}
    for prog in n.PROGRAMS:
        try:
            fds[prog] = maps.obj_get(pins.prog(build, prog))
        except OSError:
            Programs(build, fds).close()
            return None
    return Programs(build, fds)


def compile_and_pin(pins: n.PinLayout, build: str, *, bpf_dir: Path = n.BPF_DIR,
                    extra_cflags: tuple[str, ...] = ()) -> Programs:
    """Compile every program with bcc, load it and pin it under `progs/<build>/`."""
    try:
        from bcc import BPF
    except ImportError as exc:
        raise ProgramLoadError("bcc is not installed (Debian: python3-bpfcc)") from exc
    cflags = [*n.defines(pins), f"-I{bpf_dir}", *extra_cflags]
    (pins.root / "maps").mkdir(parents=True, exist_ok=True)
    fds: dict[str, int] = {}
    try:
        for prog in n.PROGRAMS:
            try:
                module = BPF(text=render_source(prog, bpf_dir).encode(), cflags=cflags)
            except Exception as exc:  # bcc raises bare Exception for compile errors
                raise ProgramLoadError(f"{prog}: {_one_line(exc)}") from exc
            try:
                with _captured_stderr() as captured:
                    try:
                        fn = module.load_func(prog.encode(), BPF.SCHED_CLS)
                        exc_seen: Exception | None = None
                    except Exception as exc:
                        exc_seen = exc
                if exc_seen is not None:
                    text = "".join(captured)
                    log.debug("verifier log for %s:\n%s", prog, text)
                    raise ProgramLoadError(
                        f"{prog}: {_one_line(exc_seen)}: {verifier_reason(text)}"
                    ) from exc_seen
                fds[prog] = os.dup(int(fn.fd))
            finally:
                module.cleanup()
        for prog, fd in fds.items():
            path = pins.prog(build, prog)
            if path.exists():
                path.unlink()
            maps.obj_pin(fd, path)
    except BaseException:
        Programs(build, fds).close()
        raise
    log.info("loaded and pinned build %s of %s under %s", build, ", ".join(n.PROGRAMS),
             pins.progs)
    return Programs(build, fds)


def forget_other_builds(pins: n.PinLayout, keep: str) -> None:
    """Unpin the programs of every build but `keep` (attached ones stay loaded
    until their filter is replaced)."""
    if not pins.progs.exists():
        return
    for build in pins.progs.iterdir():
        if build.name == keep:
            continue
        for pin in build.iterdir():
            pin.unlink()
        build.rmdir()


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """bcc writes the verifier log to file descriptor 2 itself: catch it there.
    The list receives the text when the block ends."""
    out: list[str] = []
    with tempfile.TemporaryFile("w+") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read())


def verifier_reason(log_text: str) -> str:
    """The verifier's complaint: the last line before its "processed N insns" summary."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("processed ") and i > 0:
            return lines[i - 1][:300]
    return lines[-1][:300] if lines else "no verifier log"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:400]
