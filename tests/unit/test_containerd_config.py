"""lab.containerd's config and lab.images' lookups, without starting anything.

Each setting pinned here was needed on this machine kind (see lab/containerd.py):
losing one breaks pods in ways that only show at run time.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from lab import images
from lab.containerd import ContainerdConfig, render_config, shim_socket


def config(tmp_path: Path, **kw: str) -> ContainerdConfig:
    return ContainerdConfig(name="c1-n0", netns="gn-lab-c1-n0", base_dir=tmp_path / "ctd", **kw)


def test_config_keeps_every_path_private_to_the_node(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    doc = tomllib.loads(render_config(cfg))
    assert doc["version"] == 2
    assert doc["root"] == str(cfg.root) and doc["state"] == str(cfg.state)
    assert doc["grpc"]["address"] == str(cfg.address)
    assert doc["ttrpc"]["address"] == str(cfg.ttrpc_address)
    assert "io.containerd.internal.v1.opt" in doc["disabled_plugins"]
    # The tasks service needs the v1 runtime: disabling it disables CRI.
    assert "io.containerd.runtime.v1.linux" not in doc["disabled_plugins"]
    plugins = doc["plugins"]
    assert plugins["io.containerd.runtime.v1.linux"]["runtime_root"] == str(cfg.runc_root)
    cri = plugins["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["stream_server_address"] == "127.0.0.1"
    assert cri["sandbox_image"] == "globalnet/pause:lab"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {"SystemdCgroup": False, "Root": str(cfg.runc_root)}
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": str(cfg.cni_conf_dir)}
    for path in (cfg.root, cfg.state, cfg.address, cfg.runc_root, cfg.cni_conf_dir):
        assert cfg.base_dir in path.parents


def test_cgroup_parent_is_per_node_and_never_the_root(tmp_path: Path) -> None:
    assert config(tmp_path).cgroup == "/globalnet/c1-n0"
    assert config(tmp_path, cgroup_parent="kubepods-n0/").cgroup == "/kubepods-n0"
    with pytest.raises(ValueError):
        _ = config(tmp_path, cgroup_parent="/").cgroup


def test_shim_socket_matches_containerd_16() -> None:
    # sha256 of "<address>/<namespace>/<id>" in /run/containerd/s, as the runc shim names it.
    sock = shim_socket("/tmp/x/containerd.sock", "k8s.io", "abc")
    assert sock.parent == Path("/run/containerd/s") and len(sock.name) == 64


def test_image_references_and_missing_archives(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLOBALNET_CACHE", str(tmp_path))
    assert images.reference("test") == "globalnet/test:lab"
    with pytest.raises(ValueError):
        images.reference("nginx")
    with pytest.raises(images.ImageError, match="make images"):
        images.archive("pause")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "pause-0123.tar").write_bytes(b"x")
    (tmp_path / "images" / "pause.tar").symlink_to("pause-0123.tar")
    assert images.archive("pause") == tmp_path / "images" / "pause-0123.tar"
