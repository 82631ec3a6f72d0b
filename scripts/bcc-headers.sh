#!/usr/bin/env bash
# Give bcc a kernel build tree when the running kernel ships none.
#
# This machine kind runs a kernel without headers; Debian's linux-headers-amd64
# (6.1) works for programs that use only uapi headers when presented as the
# running kernel's build tree. We only add the links when nothing is there.
set -euo pipefail
mod="/lib/modules/$(uname -r)"
say() { printf '[bcc-headers] %s\n' "$*"; }
if [[ -e "$mod/build/include" ]]; then
  say "kernel build tree present at $mod/build"
  exit 0
fi
amd64=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n1 || true)
[[ -n "$amd64" && -n "$common" ]] || { echo "[bcc-headers] error: linux-headers-amd64 is not installed" >&2; exit 1; }
mkdir -p "$mod"
ln -sfn "$amd64" "$mod/build"
ln -sfn "$common" "$mod/source"
say "linked $mod/build -> $amd64 and $mod/source -> $common"
