"""Shared fixtures: a real control plane for tests/kube, namespaces for privileged tests.

The whole run already sits in a throwaway network namespace (scripts/run-tests.sh),
so the API server below listens on that namespace's loopback only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import netns
from lab.controlplane import ControlPlane, ControlPlaneConfig
from lab.ports import free_port


@contextlib.contextmanager
def running_control_plane(name: str, *, etcd_compaction_interval: str | None = None
                          ) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver in a data directory of their own, removed afterwards."""
    data = Path(tempfile.mkdtemp(prefix=f"gn-cp-{name}-"))
    config = ControlPlaneConfig(name=name, data_dir=data, apiserver_port=free_port(),
                                etcd_client_port=free_port(), etcd_peer_port=free_port())
    if etcd_compaction_interval is not None:
        config = dataclasses.replace(config, etcd_compaction_interval=etcd_compaction_interval)
    cp = ControlPlane(config)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def bare_control_plane() -> Iterator[ControlPlane]:
    """A control plane of its own with no CRDs: a server an older release set up (an old
    Broker), for tests that install or upgrade CRDs without disturbing the session's."""
    with running_control_plane("bare") as cp:
        yield cp


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver 1.20 + kube-controller-manager with the CRDs installed."""
    # No automatic compaction: tests that need 410 Gone compact etcd themselves, at the
    # moment they choose.
    with running_control_plane("test", etcd_compaction_interval="0") as cp:
        from kube import crds
        from kube.client import new_api_client

        api = new_api_client(cp.kubeconfig)
        try:
            crds.install_crds(api)
        finally:
            api.close()
        yield cp


@pytest.fixture
def api_client(control_plane: ControlPlane) -> Iterator[Any]:
    from kube.client import new_api_client

    api = new_api_client(control_plane.kubeconfig)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    """Factory for namespaces named gn-t<id>-<tag>; all are deleted after the test."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    made: list[str] = []
    run_id = uuid.uuid4().hex[:6]

    def make(tag: str) -> str:
        name = f"gn-t{run_id}-{tag}"
        made.append(name)
        netns.ensure_netns(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            netns.delete_netns(name)


@pytest.fixture
def configmaps(api_client: Any) -> Any:
    """ConfigMaps of the session's API server: the plain objects informer tests watch."""
    from kube import crud, resources

    return crud.ResourceClient(api_client, resources.CONFIGMAPS)
