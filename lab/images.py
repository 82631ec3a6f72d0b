"""The lab's container images: their names and the archives containerd imports.

Images cannot be pulled on this machine kind. deploy/images/build.sh (`make
images`) builds them offline into docker-archives cached by content, with
NAME.tar linking to the current one; `ctr -n k8s.io images import` of such an
archive makes `globalnet/NAME:lab` known to containerd, so pod specs use that
name with `imagePullPolicy: Never` or `IfNotPresent`.
"""

from __future__ import annotations

from pathlib import Path

from lab.controlplane import cache_dir

IMAGES = ("pause", "globalnet", "test")
TAG = "lab"


class ImageError(RuntimeError):
    """An image archive is missing; the message names the command that builds it."""


def images_dir() -> Path:
    return cache_dir() / "images"


def reference(name: str) -> str:
    """The short name an image has once imported (containerd expands it to the full one)."""
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r} (images: {', '.join(IMAGES)})")
    return f"globalnet/{name}:{TAG}"


def archive(name: str) -> Path:
    """The current docker-archive of image `name`, built by `make images`."""
    reference(name)
    link = images_dir() / f"{name}.tar"
    target = link.resolve()
    if not target.is_file():
        raise ImageError(f"image {name} is not built ({link} missing): run `make images`")
    return target
