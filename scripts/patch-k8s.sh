#!/usr/bin/env bash
# Build-time patches to a Kubernetes 1.20 source tree: one line per component that needs one.
#
#   scripts/patch-k8s.sh COMPONENT SRC_TREE   apply COMPONENT's patch (idempotent; fails
#                                             loudly if the line it replaces is not there once)
#   scripts/patch-k8s.sh --id COMPONENT       print the patch's id (build-k8s.sh stamps the
#                                             binary with it: COMPONENT.patch-id)
#   scripts/patch-k8s.sh --components         the components that have a patch
#
# kubelet: setupNode (pkg/kubelet/cm/container_manager_linux.go) sets
# vm.overcommit_memory, kernel.panic and kernel.panic_on_oops whenever kubelet starts:
# on a machine that runs several lab nodes those are the host's own. Patched, it only
# warns about values that differ; protectKernelDefaults still makes it refuse to start.
#
# kube-apiserver: go-openapi's type check (type.go of vendor/github.com/go-openapi/validate
# and of its fork in vendor/k8s.io/kube-openapi, which custom resources are validated
# with) takes a value for null when reflect.DeepEqual finds its reflect.Value equal to its
# type's zero Value. Built with a Go newer than 1.20 was made for, that holds for an
# empty string (every "" shares the runtime's zero data pointer), so any custom resource
# with "" in a string field was refused: `must be of type string: "null"`. Patched,
# only a JSON null is null.
set -euo pipefail

COMPONENTS=(kubelet kube-apiserver)

say() { printf '[build-k8s] %s\n' "$*"; }
die() { printf '[build-k8s] error: %s\n' "$*" >&2; exit 1; }

# FILES (each has the line once), FROM (the line replaced), TO and WHAT of a patch.
patch_of() {
  case $1 in
    kubelet)
      FILES=(pkg/kubelet/cm/container_manager_linux.go)
      FROM=$'\tb := KernelTunableModify'
      TO=$'\tb := KernelTunableWarn'
      WHAT="setupNode only warns about kernel tunables" ;;
    kube-apiserver)
      FILES=(vendor/github.com/go-openapi/validate/type.go
             vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go)
      FROM=$'\tif data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {'
      TO=$'\tif data == nil {'
      WHAT="only a JSON null fails a typed field of a custom resource as null" ;;
    *) die "no patch for ${1:-nothing}: one of ${COMPONENTS[*]}" ;;
  esac
}

case ${1:-} in
  --components) printf '%s\n' "${COMPONENTS[@]}"; exit 0 ;;
  --id)
    # The id changes with what the patch does, not with this script's comments.
    patch_of "${2:-}"
    printf '%s\n' "${FILES[@]}" "$FROM" "$TO" | sha256sum | cut -c1-12
    exit 0 ;;
esac
[[ $# -eq 2 ]] || die "usage: $0 COMPONENT SRC_TREE | --id COMPONENT | --components"
component=$1
patch_of "$component"

count() { grep -cxF -- "$1" "$2" || true; }

for FILE in "${FILES[@]}"; do
  path="$2/$FILE"
  [[ -f $path ]] || die "$component patch: $FILE not in $2"
  n_from=$(count "$FROM" "$path")
  n_to=$(count "$TO" "$path")
  if [[ $n_from == 0 && $n_to == 1 ]]; then
    say "$component patch already applied ($FILE)"
    continue
  fi
  [[ $n_from == 1 && $n_to == 0 ]] \
    || die "$component patch: expected the line '${FROM#$'\t'}' once in $FILE, found it $n_from times (and the patched line $n_to times)"
  say "patching $component: $WHAT ($FILE)"
  awk -v from="$FROM" -v to="$TO" '$0 == from { print to; next } { print }' "$path" >"$path.patched"
  mv "$path.patched" "$path"
  [[ $(count "$TO" "$path") == 1 && $(count "$FROM" "$path") == 0 ]] \
    || die "$component patch did not apply to $FILE"
done
