#!/usr/bin/env bash
# Try Globalnet on kind: a Broker and 2-3 member clusters whose pod and service
# CIDRs are identical (10.244.0.0/16, 10.96.0.0/16), joined into one clusterset.
#
#   deploy/kind/up.sh [--clusters 2|3] [--datapath nftables|ebpf] [--cable-driver vxlan|wireguard|ipsec]
#
# Needs docker (with its daemon), kind, kubectl, and gnctl: the checkout's
# .venv/bin/gnctl (`make venv`), else gnctl on PATH. Safe to run again: existing
# clusters are kept, the images rebuilt and reloaded, the joins repeated.
# deploy/kind/down.sh undoes it; deploy/kind/README.md explains what to look at.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=common.sh
source "$here/common.sh"

usage() {
  echo "usage: $0 [--clusters 2|3] [--datapath nftables|ebpf] [--cable-driver vxlan|wireguard|ipsec]"
}

# parse_args ARGS...: sets clusters, datapath, cable_driver.
parse_args() {
  clusters=2
  datapath=nftables
  cable_driver=vxlan
  while (($#)); do
    case $1 in
      --clusters | --datapath | --cable-driver)
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
          --clusters) clusters=$2 ;;
          --datapath) datapath=$2 ;;
          --cable-driver) cable_driver=$2 ;;
        esac
        shift 2
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
  done
  [[ $clusters =~ ^[23]$ ]] || die "--clusters: 2 or 3 member clusters, not '$clusters'"
  [[ $datapath == nftables || $datapath == ebpf ]] \
    || die "--datapath: nftables or ebpf, not '$datapath'"
  [[ $cable_driver =~ ^(vxlan|wireguard|ipsec)$ ]] \
    || die "--cable-driver: vxlan, wireguard or ipsec, not '$cable_driver'"
  # The eBPF programs need an Ethernet cable device; WireGuard's and IPsec's are TUNs.
  [[ $datapath == nftables || $cable_driver == vxlan ]] \
    || die "--datapath ebpf needs --cable-driver vxlan, not '$cable_driver'"
  members=("${ALL_MEMBERS[@]:0:clusters}")
}

# find_gnctl: the checkout's venv first, then PATH.
find_gnctl() {
  if [[ -x $repo/.venv/bin/gnctl ]]; then
    GNCTL=$repo/.venv/bin/gnctl
  elif type -P gnctl >/dev/null; then
    # type -P, not command -v: the latter would name the gnctl function below.
    GNCTL=$(type -P gnctl)
  else
    die "gnctl not found: run \`make venv\` in $repo, or put gnctl on PATH"
  fi
  say "gnctl: $GNCTL"
}

# Every gnctl call goes through here; tests/unit/test_kind_recipe.py checks each one.
gnctl() { "$GNCTL" "$@"; }

# create_cluster NAME CONFIG: create it unless kind has it already.
create_cluster() {
  local name=$1 config=$2
  if cluster_exists "$name"; then
    say "$name: exists, kept as it is (down.sh first to recreate it)"
    kind export kubeconfig --name "$name" --kubeconfig "$KUBECONFIG_FILE"
  else
    say "$name: creating from deploy/kind/${config##*/}"
    kind create cluster --name "$name" --config "$config" \
      --kubeconfig "$KUBECONFIG_FILE" --wait 5m
  fi
}

create_clusters() {
  local member_config=$here/member.yaml m
  if [[ $datapath == ebpf ]]; then
    member_config=$here/member-ebpf.yaml
  fi
  create_cluster "$BROKER" "$here/broker.yaml"
  for m in "${members[@]}"; do
    create_cluster "$m" "$member_config"
  done
}

# build_images: the agents' image (the Dockerfile's default target) and the test
# workload used by the try-it commands, loaded into every member's nodes.
build_images() {
  local m
  say "building $IMAGE (deploy/Dockerfile)"
  (cd "$repo" && docker build -f deploy/Dockerfile -t "$IMAGE" .)
  say "building $TEST_IMAGE (deploy/Dockerfile --target test)"
  (cd "$repo" && docker build -f deploy/Dockerfile --target test -t "$TEST_IMAGE" .)
  for m in "${members[@]}"; do
    say "$m: loading the images"
    kind load docker-image "$IMAGE" "$TEST_IMAGE" --name "$m"
  done
}

label_gateways() {
  local m
  for m in "${members[@]}"; do
    say "$m: $m-worker is the gateway node"
    kube "$m" label node "$m-worker" submariner.io/gateway=true --overwrite
  done
}

# prepare_ebpf_nodes: a bpffs of the node's own at /sys/fs/bpf (the gateway pod
# mounts it from the node), and a warning when bcc will find no kernel headers.
prepare_ebpf_nodes() {
  local m node
  for m in "${members[@]}"; do
    node=$m-worker
    say "$m: mounting bpffs in $node"
    docker exec "$node" sh -c \
      'grep -q " /sys/fs/bpf bpf " /proc/mounts || mount -t bpf bpf /sys/fs/bpf'
    if ! docker exec "$node" sh -c 'test -e "/lib/modules/$(uname -r)/build/include"'; then
      say "warning: $node has no kernel headers for bcc (install the host's linux-headers package)"
    fi
  done
}

# broker_api_server: the Broker URL for broker-info.subm, unless BROKER_API_SERVER
# names one. Members reach the Broker on kind's Docker network by the control-plane
# container's name (`kind get kubeconfig --internal --name broker` shows it). But
# `gnctl join` runs here and reaches the Broker by that URL too, and a Linux host
# does not resolve container names: then the container's address on kind's network
# is used, which the host, the nodes and the pods all reach and the API server's
# certificate names (kubeadm adds the advertise address).
broker_api_server() {
  local node=$BROKER-control-plane network=${KIND_EXPERIMENTAL_DOCKER_NETWORK:-kind} ip
  if [[ -n ${BROKER_API_SERVER:-} ]]; then
    return
  fi
  if getent hosts "$node" >/dev/null 2>&1; then
    BROKER_API_SERVER=https://$node:6443
    return
  fi
  ip=$(docker inspect -f "{{with index .NetworkSettings.Networks \"$network\"}}{{.IPAddress}}{{end}}" \
    "$node")
  [[ -n $ip ]] || die "$node has no IPv4 address on Docker network $network; set BROKER_API_SERVER"
  say "this host does not resolve $node: the Broker URL is its address on kind's network"
  BROKER_API_SERVER=https://$ip:6443
}

deploy_broker() {
  broker_api_server
  mkdir -p -m 0700 "$STATE_DIR"
  say "$BROKER: deploying the Broker (members will reach it at $BROKER_API_SERVER)"
  gnctl deploy-broker --kubeconfig "$KUBECONFIG_FILE" --context "kind-$BROKER" --globalnet \
    --broker-api-server "$BROKER_API_SERVER" --out "$BROKER_INFO"
}

join_members() {
  local m
  for m in "${members[@]}"; do
    say "$m: joining (datapath $datapath, cable $cable_driver)"
    gnctl join "$BROKER_INFO" --kubeconfig "$KUBECONFIG_FILE" --context "kind-$m" --clusterid "$m" \
      --image "$IMAGE" --datapath "$datapath" --cable-driver "$cable_driver"
  done
}

# forward_clusterset_dns: each member's CoreDNS sends clusterset.local to its
# Lighthouse DNS Service. add-clusterset-forward.sh talks to kubectl's current
# context, so it gets a kubeconfig holding just this cluster.
forward_clusterset_dns() {
  local m ip
  member_kubeconfig=$(mktemp)
  trap 'rm -f "$member_kubeconfig"' EXIT
  for m in "${members[@]}"; do
    ip=$(kube "$m" -n submariner-operator get service globalnet-lighthouse-dns \
      -o jsonpath='{.spec.clusterIP}')
    [[ -n $ip ]] || die "$m: Service submariner-operator/globalnet-lighthouse-dns has no ClusterIP"
    kind get kubeconfig --name "$m" >"$member_kubeconfig"
    say "$m: CoreDNS forwards clusterset.local to $ip"
    KUBECONFIG=$member_kubeconfig "$repo/deploy/coredns/add-clusterset-forward.sh" "$ip"
  done
  rm -f "$member_kubeconfig"
  trap - EXIT
}

print_try_it() {
  local last=${members[-1]}
  cat <<TRY

Globalnet is up: Broker 'kind-$BROKER', members ${members[*]/#/kind-} (datapath $datapath).
Contexts are in $KUBECONFIG_FILE; the broker-info file is $BROKER_INFO.
Try it: export a service in $last and reach it from c1 by its clusterset name
(CoreDNS picks up the forward within about 30 s):

  kubectl --context kind-$last create deployment web --image=$TEST_IMAGE
  kubectl --context kind-$last expose deployment web --port=80 --target-port=8080
  printf 'apiVersion: multicluster.x-k8s.io/v1beta1\\nkind: ServiceExport\\nmetadata: {name: web, namespace: default}\\n' \\
    | kubectl --context kind-$last apply -f -
  kubectl --context kind-$last get globalingressip web
  kubectl --context kind-c1 run client --image=$TEST_IMAGE --command -- sleep infinity
  kubectl --context kind-c1 wait --for=condition=Ready pod/client
  kubectl --context kind-c1 exec client -- curl -s http://web.default.svc.clusterset.local/

Look at: kubectl --context kind-c1 get pods -n submariner-operator
         docker exec c1-worker nft list table inet globalnet
Undo:    deploy/kind/down.sh
TRY
}

main() {
  parse_args "$@"
  require_tools docker kind kubectl
  require_docker_daemon
  find_gnctl
  create_clusters
  build_images
  label_gateways
  if [[ $datapath == ebpf ]]; then
    prepare_ebpf_nodes
  fi
  deploy_broker
  join_members
  forward_clusterset_dns
  print_try_it
}

main "$@"
