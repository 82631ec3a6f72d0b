"""scripts/patch-k8s.sh: kubelet must never write host-wide sysctls, and the API
server must not take an empty string in a custom resource for null.

The patches are applied to the real source tree at build time (scripts/build-k8s.sh);
here they run on a stand-in tree: each applies once, is idempotent, and fails loudly
when the line it replaces is not there exactly once.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "patch-k8s.sh"
FILE = "pkg/kubelet/cm/container_manager_linux.go"
SETUP_NODE = (
    "func (cm *containerManagerImpl) setupNode(activePods ActivePodsFunc) error {\n"
    "\tb := KernelTunableModify\n"
    "\tif cm.GetNodeConfig().ProtectKernelDefaults {\n"
    "\t\tb = KernelTunableError\n"
    "\t}\n"
)


TYPE_CHECKS = ("vendor/github.com/go-openapi/validate/type.go",
               "vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go")
ZERO_IS_NULL = ("\tif data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), "
                "reflect.ValueOf(data)) {\n")


def run(*args: str, component: str = "kubelet") -> subprocess.CompletedProcess[str]:
    if args and args[0] != "--id":
        args = (component, *args)
    elif args:
        args = (*args, component)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)


def tree(tmp_path: Path, text: str) -> Path:
    path = tmp_path / FILE
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_patch_turns_modify_into_warn_once(tmp_path: Path) -> None:
    path = tree(tmp_path, SETUP_NODE)
    first = run(str(tmp_path))
    assert first.returncode == 0, first.stderr
    patched = path.read_text()
    assert "\tb := KernelTunableWarn\n" in patched
    assert "KernelTunableModify" not in patched
    assert "b = KernelTunableError" in patched
    second = run(str(tmp_path))
    assert second.returncode == 0 and "already applied" in second.stdout
    assert path.read_text() == patched


def test_patch_fails_loudly_when_the_line_is_not_there(tmp_path: Path) -> None:
    tree(tmp_path, SETUP_NODE.replace("KernelTunableModify", "somethingElse"))
    out = run(str(tmp_path))
    assert out.returncode != 0
    assert "expected the line 'b := KernelTunableModify' once" in out.stderr


def test_patch_fails_when_the_line_is_there_twice(tmp_path: Path) -> None:
    path = tree(tmp_path, SETUP_NODE + SETUP_NODE)
    out = run(str(tmp_path))
    assert out.returncode != 0 and "found it 2 times" in out.stderr
    assert path.read_text() == SETUP_NODE + SETUP_NODE


def test_patch_fails_without_the_file(tmp_path: Path) -> None:
    out = run(str(tmp_path))
    assert out.returncode != 0 and "not in" in out.stderr


def test_the_id_names_the_patch() -> None:
    out = run("--id")
    assert out.returncode == 0 and re.fullmatch(r"[0-9a-f]{12}\n", out.stdout)
    assert "patch-k8s.sh" in (ROOT / "scripts" / "build-k8s.sh").read_text()


def test_the_api_server_patch_takes_only_a_json_null_for_null(tmp_path: Path) -> None:
    """In go-openapi's type check and in its kube-openapi fork (custom resources)."""
    paths = [tmp_path / check for check in TYPE_CHECKS]
    for path in paths:
        path.parent.mkdir(parents=True)
        path.write_text("func (t *typeValidator) Validate(data interface{}) *Result {\n"
                        + ZERO_IS_NULL + "\t\treturn result\n\t}\n")
    out = run(str(tmp_path), component="kube-apiserver")
    assert out.returncode == 0, out.stderr
    for path in paths:
        assert "\tif data == nil {\n" in path.read_text()
        assert "DeepEqual" not in path.read_text()
    assert run("--id", component="kube-apiserver").stdout != run("--id").stdout


def test_a_component_without_a_patch_is_refused() -> None:
    out = run("--id", component="kube-proxy")
    assert out.returncode != 0 and "no patch for kube-proxy" in out.stderr
