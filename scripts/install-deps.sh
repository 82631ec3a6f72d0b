#!/usr/bin/env bash
# Install the Debian packages Globalnet needs, only those missing.
#
# python3-nftables and python3-bpfcc bind to Debian's /usr/bin/python3, which is
# why the venv is made from it with --system-site-packages (see Makefile).
set -euo pipefail

PACKAGES=(
  nftables python3-nftables bpfcc-tools python3-bpfcc linux-headers-amd64
  iproute2 iptables conntrack etcd-server
  # The gateways' conntrack replication (datapath/ctsync.py; tests/netns run it here).
  conntrackd
  golang-go golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  dpkg-dev rsync python3-venv python3-dev gcc make util-linux procps iputils-ping curl
  nsd dnsperf
  # Real nodes and offline images: containerd + runc + CNI plugins run the pods,
  # mmdebstrap + umoci + skopeo build the images (deploy/images/build.sh).
  containerd runc containernetworking-plugins mmdebstrap umoci skopeo
  # The WireGuard cable (datapath/wireguard.py): wireguard-go is WireGuard in
  # userspace over a TUN device, for kernels without the module; `wg` configures it
  # (and kernel WireGuard where there is one). Without recommends, as below: they
  # would pull in dkms and a module build.
  wireguard-go wireguard-tools
  # The IPsec cable (datapath/ipsec.py): charon with kernel-libipsec does ESP in
  # userspace over a TUN device (kernels without ESP); the engine configures it
  # over vici. The driver starts its own charon per gateway.
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
  # The lab's Prometheus (lab/prometheus.py) scrapes every agent; promtool checks
  # deploy/prometheus/. Without recommends: no node exporter on the host.
  prometheus
)
say() { printf '[deps] %s\n' "$*"; }

# kubectl: any one will do (some images ship one from another package, which
# Debian's kubernetes-client would conflict with).
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  say "all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "[deps] error: installing ${missing[*]} needs root" >&2; exit 1; }
say "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# nsd is only a reference for bench-dns, and the lab starts its own containerd
# per node: a daemon a package may start on install must not keep running on the host.
nsd_before=$(pgrep -x nsd || true)
containerd_before=$(pgrep -x containerd || true)
charon_before=$(pgrep -x charon || true)
prometheus_before=$(pgrep -x prometheus || true)
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/globalnet-apt.log 2>&1 \
  || { tail -n 20 /tmp/globalnet-apt.log >&2; echo "[deps] error: apt-get install failed" >&2; exit 1; }
if [[ -z "$nsd_before" ]]; then
  for pid in $(pgrep -x nsd || true); do kill "$pid" 2>/dev/null || true; done
fi
if [[ -z "$containerd_before" ]]; then
  for pid in $(pgrep -x containerd || true); do kill "$pid" 2>/dev/null || true; done
fi
if [[ -z "$charon_before" ]]; then
  # strongswan-starter's unit may start a host-wide charon: never wanted here.
  for pid in $(pgrep -x charon || true); do kill "$pid" 2>/dev/null || true; done
  command -v systemctl >/dev/null && systemctl disable strongswan-starter >/dev/null 2>&1 || true
fi
if [[ -z "$prometheus_before" ]]; then
  # The package's unit would scrape the host: the lab runs its own, in a namespace.
  for pid in $(pgrep -x prometheus || true); do kill "$pid" 2>/dev/null || true; done
  command -v systemctl >/dev/null && systemctl disable prometheus >/dev/null 2>&1 || true
fi
say "done"
