"""`--datapath` in the agent, the composition root: which backend each flag builds.

Constructing a backend touches no kernel state, so this needs no privileges.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datapath.ebpf import EbpfDatapath
from datapath.recording import RecordingDatapath
from globalnet import agent


def test_ebpf_flags_build_the_ebpf_backend_for_the_namespace() -> None:
    args = agent.parse_args(["--uninstall", "--datapath", "ebpf", "--netns", "gw1",
                             "--bpffs", "/tmp/x", "--tunnel-dev", "vx-globalnet"])
    dp = agent.make_datapath(args.datapath, args.netns, bpffs=args.bpffs,
                             devices=tuple(args.tunnel_dev))
    assert isinstance(dp, EbpfDatapath) and dp.name == "ebpf"
    assert dp.pins.root == Path("/tmp/x/globalnet/gw1")
    assert dp._fixed_devices == ("vx-globalnet",)


def test_recording_stays_the_in_memory_backend() -> None:
    assert isinstance(agent.make_datapath("recording"), RecordingDatapath)


def test_netns_needs_a_kernel_backend(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        agent.parse_args(["--uninstall", "--datapath", "recording", "--netns", "gw1"])
    assert "--netns needs --datapath nftables or ebpf" in capsys.readouterr().err


@pytest.mark.parametrize("datapath", ["nftables", "ebpf"])
def test_the_lab_starts_the_agent_with_its_backend(datapath: str) -> None:
    """lab/globalnet.py's command line parses; eBPF pins under the lab's bpffs,
    scoped by the gateway's namespace, on the VXLAN cable device."""
    from lab.globalnet import agent_argv
    from lab.topology import LabSpec, plan_lab

    c = plan_lab(LabSpec(globalnet=True, datapath=datapath)).clusters[0]
    argv = agent_argv(c, "242.0.0.0/16", Path("/k"), datapath=datapath,
                      bpffs=Path("/run/lab/bpffs"))
    assert argv[1:3] == ["-m", "globalnet.agent"]
    args = agent.parse_args(argv[3:])
    assert args.datapath == datapath
    if datapath == "ebpf":
        assert args.bpffs == Path("/run/lab/bpffs") and args.tunnel_dev == ["vx-globalnet"]
        assert args.netns == c.gateway.netns
    else:
        assert args.bpffs is None and args.netns is None
