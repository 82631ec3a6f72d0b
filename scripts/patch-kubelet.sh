#!/usr/bin/env bash
# Patch a Kubernetes 1.20 source tree so that kubelet never writes host-wide sysctls.
#
#   scripts/patch-kubelet.sh SRC_TREE    apply (idempotent; fails loudly if the line is absent)
#   scripts/patch-kubelet.sh --id        print the patch's id (scripts/build-k8s.sh stamps it)
#
# setupNode (pkg/kubelet/cm/container_manager_linux.go) sets vm.overcommit_memory,
# kernel.panic and kernel.panic_on_oops whenever kubelet starts: on a machine that
# runs several lab nodes those are the host's own. Patched, it only warns about
# values that differ; protectKernelDefaults still makes it refuse to start.
set -euo pipefail

FILE=pkg/kubelet/cm/container_manager_linux.go
FROM=$'\tb := KernelTunableModify'
TO=$'\tb := KernelTunableWarn'

say() { printf '[build-k8s] %s\n' "$*"; }
die() { printf '[build-k8s] error: %s\n' "$*" >&2; exit 1; }

# The id changes with what the patch does, not with this script's comments.
if [[ ${1:-} == --id ]]; then
  printf '%s\n' "$FILE" "$FROM" "$TO" | sha256sum | cut -c1-12
  exit 0
fi
[[ $# -eq 1 ]] || die "usage: $0 SRC_TREE | --id"

count() { grep -cxF -- "$1" "$2" || true; }

path="$1/$FILE"
[[ -f $path ]] || die "kubelet patch: $FILE not in $1"
n_from=$(count "$FROM" "$path")
n_to=$(count "$TO" "$path")
if [[ $n_from == 0 && $n_to == 1 ]]; then
  say "kubelet patch already applied ($FILE)"
  exit 0
fi
[[ $n_from == 1 && $n_to == 0 ]] \
  || die "kubelet patch: expected the line '${FROM#$'\t'}' once in $FILE, found it $n_from times (and the patched line $n_to times)"
say "patching kubelet: setupNode only warns about kernel tunables ($FILE)"
sed -i "s/^${FROM//$'\t'/\\t}\$/${TO//$'\t'/\\t}/" "$path"
[[ $(count "$TO" "$path") == 1 && $(count "$FROM" "$path") == 0 ]] \
  || die "kubelet patch did not apply to $FILE"
