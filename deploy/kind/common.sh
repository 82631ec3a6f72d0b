# Shared by deploy/kind/up.sh and down.sh; sourced, never run.
#
# Environment (all optional):
#   KUBECONFIG_FILE     where the kind-* contexts go (default: the first entry of
#                       $KUBECONFIG, else ~/.kube/config, as kind and kubectl do)
#   GLOBALNET_KIND_DIR  where broker-info.subm is kept (default ~/.cache/globalnet/kind)
#   BROKER_API_SERVER   the Broker URL written into broker-info.subm (default: see
#                       broker_api_server in up.sh)

BROKER=broker
# Every member name the recipe may create; up.sh --clusters N uses the first N.
ALL_MEMBERS=(c1 c2 c3)
IMAGE=globalnet/globalnet:kind
TEST_IMAGE=globalnet/test:kind

KUBECONFIG_FILE=${KUBECONFIG_FILE:-${KUBECONFIG:-$HOME/.kube/config}}
KUBECONFIG_FILE=${KUBECONFIG_FILE%%:*}
STATE_DIR=${GLOBALNET_KIND_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/globalnet/kind}
BROKER_INFO=$STATE_DIR/broker-info.subm

say() { printf '[kind] %s\n' "$*"; }
die() { printf '[kind] error: %s\n' "$*" >&2; exit 1; }

# require_tools TOOL...: one line naming every missing tool, then exit.
require_tools() {
  local tool missing=()
  for tool in "$@"; do
    type -P "$tool" >/dev/null || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    die "${missing[*]} not found on PATH; this recipe needs ${*} (see deploy/kind/README.md)"
  fi
}

require_docker_daemon() {
  docker info >/dev/null 2>&1 \
    || die "docker cannot reach the Docker daemon (is it running, and may this user use it?)"
}

# cluster_exists NAME: whether kind knows a cluster of this name.
cluster_exists() {
  kind get clusters 2>/dev/null | grep -x -- "$1" >/dev/null
}

# kubectl against one kind cluster, through the recipe's kubeconfig.
kube() {
  local cluster=$1
  shift
  kubectl --kubeconfig "$KUBECONFIG_FILE" --context "kind-$cluster" "$@"
}
