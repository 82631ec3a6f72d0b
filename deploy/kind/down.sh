#!/usr/bin/env bash
# Delete what deploy/kind/up.sh made: the kind clusters broker, c1, c2, c3 (those
# that exist; their kind-* contexts go with them) and the broker-info file. The
# images stay in Docker (`docker image rm globalnet/globalnet:kind globalnet/test:kind`).
#
#   deploy/kind/down.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"

delete_cluster() {
  local name=$1
  if cluster_exists "$name"; then
    say "$name: deleting"
    kind delete cluster --name "$name" --kubeconfig "$KUBECONFIG_FILE"
  else
    say "$name: not there"
  fi
}

main() {
  if (($#)); then
    echo "usage: $0 (no arguments)" >&2
    exit 2
  fi
  require_tools docker kind
  local name
  for name in "${ALL_MEMBERS[@]}" "$BROKER"; do
    delete_cluster "$name"
  done
  rm -f "$BROKER_INFO"
  rmdir "$STATE_DIR" 2>/dev/null || true
  say "done"
}

main "$@"
