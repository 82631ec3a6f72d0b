"""The capabilities deploy.manifests gives the Globalnet container with ``--datapath
ebpf`` are enough to compile, load and pin the datapath's programs, and the smaller
set BPF + PERFMON is not (bcc opens its pinned maps by ID, which needs SYS_ADMIN).

Each probe runs as root in a private mount namespace with a fresh bpffs and only the
named capabilities in its bounding set (``setpriv``), as a container's process would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import manifests as m
from deploy import rbac

pytestmark = pytest.mark.privileged

PROBE = """
import sys
from pathlib import Path
from datapath.ebpf import loader, names
loader.compile_and_pin(names.PinLayout(Path(sys.argv[1]), "caps-probe"), "caps-probe")
print("pinned")
"""
ROOT = Path(__file__).resolve().parents[2]


def load_with(capabilities: set[str], bpffs: Path) -> subprocess.CompletedProcess[str]:
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in sorted(capabilities))])
    script = (f'mount -t bpf bpf "$1" && exec setpriv --bounding-set={bounding} '
              f'--inh-caps=-all "$2" -c "$3" "$1"')
    return subprocess.run(
        ["unshare", "--mount", "--fork", "--", "bash", "-c", script, "probe", str(bpffs),
         sys.executable, PROBE],
        capture_output=True, text=True, timeout=300, cwd=ROOT)


def rendered_globalnet_capabilities() -> set[str]:
    opts = m.Options(cluster_id="c1", global_cidr="242.0.0.0/16",
                     cluster_cidrs=("10.244.0.0/16",), service_cidrs=("10.96.0.0/16",),
                     datapath="ebpf")
    gateway = next(o for o in m.render(opts) if o["metadata"]["name"] == m.GATEWAY_DAEMONSET)
    container = next(c for c in gateway["spec"]["template"]["spec"]["containers"]
                     if c["name"] == rbac.GLOBALNET)
    return set(container["securityContext"]["capabilities"]["add"])


@pytest.fixture
def bpffs(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    pytest.importorskip("bcc")
    path = tmp_path / "bpffs"
    path.mkdir()
    return path


def test_the_rendered_capabilities_load_the_ebpf_datapath(bpffs: Path) -> None:
    caps = rendered_globalnet_capabilities()
    done = load_with(caps, bpffs)
    assert done.returncode == 0 and "pinned" in done.stdout, done.stderr[-2000:]


def test_bpf_and_perfmon_alone_are_not_enough(bpffs: Path) -> None:
    done = load_with({"NET_ADMIN", "BPF", "PERFMON"}, bpffs)
    assert done.returncode != 0
    assert "Operation not permitted" in done.stderr, done.stderr[-2000:]
