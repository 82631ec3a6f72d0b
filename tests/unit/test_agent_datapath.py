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
def test_the_lab_installs_the_agent_with_its_backend(datapath: str) -> None:
    """What `gnctl join` applies in a lab cluster: the gateway DaemonSet's Globalnet
    container, whose arguments the agent's own parser takes, with the lab's backend
    (eBPF: pinned under the node's /sys/fs/bpf, mounted from the host path)."""
    from deploy import install
    from lab import globalnet as lab_globalnet
    from lab.topology import LabSpec, plan_lab

    c = plan_lab(LabSpec(globalnet=True, datapath=datapath)).clusters[0]
    opts = lab_globalnet.join_options(c, datapath=datapath, apiserver_port=6443)
    objects = install.render_member(opts, global_cidr="242.0.0.0/16",
                                    pods=opts.cluster_cidrs, services=opts.service_cidrs)
    gateway = next(o for o in objects if o["kind"] == "DaemonSet"
                   and o["metadata"]["name"] == "globalnet-gateway")
    container = next(k for k in gateway["spec"]["template"]["spec"]["containers"]
                     if k["name"] == "globalnet")
    assert container["command"] == ["python3", "-m", "globalnet.agent"]
    args = agent.parse_args([a.replace("$(NODE_NAME)", c.gateway.name)
                             for a in container["args"]])
    assert args.datapath == datapath and args.netns is None
    assert args.kubeconfig == Path("/etc/globalnet/kube/kubeconfig")
    if datapath == "ebpf":
        assert args.bpffs == Path("/sys/fs/bpf")
        mounts = {v["mountPath"] for v in container["volumeMounts"]}
        assert {"/sys/fs/bpf", "/lib/modules", "/usr/src"} <= mounts
    else:
        assert args.bpffs is None
