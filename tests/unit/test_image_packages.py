"""The image package lists are the one source of both builders.

deploy/images/build.sh (the lab's offline builder) and deploy/Dockerfile (what
users build with Docker) must install the same packages: both read
deploy/images/NAME.packages, and neither may name a package of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "deploy" / "images"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
BUILDER = IMAGES / "build.sh"
# Images a user builds with Docker; pause is the lab's own sandbox image only.
DOCKER_TARGETS = ("globalnet", "test")
DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def packages(name: str) -> list[str]:
    text = (IMAGES / f"{name}.packages").read_text()
    return [word for line in text.splitlines() for word in line.split("#")[0].split()]


def stages() -> dict[str, str]:
    """Dockerfile text per stage name (instructions joined over continuation lines)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        m = re.match(r"^FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = m.group(1)
            out[current] = ""
        elif current and not line.lstrip().startswith("#"):
            out[current] += line + "\n"
    return out


def test_every_list_is_well_formed() -> None:
    lists = sorted(p.stem for p in IMAGES.glob("*.packages"))
    assert lists == ["globalnet", "pause", "test"]
    for name in lists:
        pkgs = packages(name)
        assert pkgs, name
        assert len(pkgs) == len(set(pkgs)), f"{name}: duplicates"
        assert all(DEB_NAME.match(p) for p in pkgs), (name, pkgs)


def test_lists_hold_what_the_images_are_for() -> None:
    assert {"python3", "python3-nftables", "python3-bpfcc", "nftables", "iproute2",
            "conntrack", "wireguard-go", "wireguard-tools", "strongswan-charon",
            "strongswan-swanctl", "libcharon-extra-plugins",
            "libstrongswan-standard-plugins"} <= set(packages("globalnet"))
    assert {"python3", "curl", "iperf3"} <= set(packages("test"))
    assert {"dnsutils", "knot-dnsutils"} & set(packages("test"))
    assert packages("pause") == ["busybox-static"]


@pytest.mark.parametrize("name", DOCKER_TARGETS)
def test_dockerfile_installs_exactly_the_list(name: str) -> None:
    stage = stages()[name]
    copy = re.search(rf"^COPY\s+deploy/images/{name}\.packages\s+(\S+)", stage, re.MULTILINE)
    assert copy, f"stage {name} does not COPY deploy/images/{name}.packages"
    dest = re.escape(copy.group(1))
    feeds = re.compile(rf"{dest}\s*\|\s*xargs\s+apt-get install\s+-y\s+--no-install-recommends")
    assert feeds.search(stage), f"stage {name} does not install {copy.group(1)} with xargs"


def test_dockerfile_names_no_package_of_its_own() -> None:
    listed = {p for name in DOCKER_TARGETS for p in packages(name)}
    for name, stage in stages().items():
        for m in re.finditer(r"apt-get install\s+([^&;|]*)", stage):
            words = [w for w in m.group(1).split() if not w.startswith("-")]
            if name in DOCKER_TARGETS:
                assert not words, f"stage {name} installs {words} outside its list"
            else:
                # The wheel-building stage needs pip only; it must not shadow a list.
                assert not set(words) & listed - {"python3"}, (name, words)


def test_builder_reads_the_same_lists() -> None:
    text = BUILDER.read_text()
    assert re.search(r'"\$HERE/\$1\.packages"', text), "build.sh does not read NAME.packages"
    m = re.search(r"^ALL=\(([^)]*)\)", text, re.MULTILINE)
    assert m and sorted(m.group(1).split()) == ["globalnet", "pause", "test"]
    assert "--no-install-recommends" in DOCKERFILE.read_text()
    assert 'APT::Install-Recommends "false"' in text


def test_no_archive_or_registry_host_is_written() -> None:
    # Mirrors come from the machine's apt sources; image names stay short.
    for path in [DOCKERFILE, BUILDER, *IMAGES.glob("*.packages")]:
        hosts = set(re.findall(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:org|com|io|net)\b",
                               path.read_text()))
        assert hosts <= {"k8s.io"}, (path, hosts)  # k8s.io: containerd's CRI namespace
