"""Lab fixtures: whole clusters with real control planes, always torn down."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.lab import Lab
from lab.ports import free_port_block
from lab.topology import LabSpec


def unique_lab_name(tag: str) -> str:
    """Short, unique per run: lab names become namespace prefixes (gn-NAME-...)."""
    return f"{tag}{os.getpid() % 1000}{random.randint(0, 99)}"[:8]


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("labs")


@contextlib.contextmanager
def running_lab(lab_root: Path, tag: str, *, globalnet: bool = False,
                datapath: str = "nftables", cable_driver: str = "vxlan", clusters: int = 2,
                gateways: int = 1) -> Iterator[Lab]:
    """`clusters` clusters (default 2) of two nodes each, identical CIDRs, the demo
    workload; always taken down. With `globalnet`, the agents run the `datapath`
    backend and the gateways `cable_driver`; `gateways` nodes of each cluster are
    gateway nodes."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = unique_lab_name(tag)
    lab = Lab(name, root=lab_root)
    spec = LabSpec(name=name, clusters=clusters, nodes=2 if gateways == 1 else gateways + 1,
                   api_port_base=free_port_block(clusters + 2),
                   globalnet=globalnet, datapath=datapath, cable_driver=cable_driver,
                   gateways=gateways)
    try:
        lab.up(spec, progress=lambda m: print(m, flush=True))
        yield lab
    finally:
        lab.down(progress=lambda *_: None)


@pytest.fixture(scope="module")
def lab2(lab_root: Path) -> Iterator[Lab]:
    """Two clusters of two nodes each, identical CIDRs, with the demo workload."""
    with running_lab(lab_root, "e") as lab:
        yield lab
