#!/usr/bin/env bash
# The demo: two lab clusters with identical CIDRs, joined by Globalnet.
set -euo pipefail
cd "$(dirname "$0")/.."
GNCTL=.venv/bin/gnctl
NAME=${GNCTL_LAB:-demo}
lab() { $GNCTL lab "$1" --name "$NAME" "${@:2}"; }
if [[ -f /run/globalnet/lab/$NAME/state.json ]]; then
  echo "[demo] lab $NAME is already up; taking it down first"
  lab down
fi
started=$SECONDS
lab up --clusters 2 --nodes 2 --globalnet
lab status
echo
echo "[demo] Globalnet was installed by gnctl deploy-broker and gnctl join: its agents are pods"
lab kubectl c1 -- get pods -n submariner-operator -o wide
echo
for c in c1 c2; do
  ip=$(lab kubectl "$c" -- get service web -o 'jsonpath={.spec.clusterIP}' 2>/dev/null)
  echo "[demo] $c: the client pod -> Service web at its ClusterIP $ip (the same address exists in both clusters):"
  for _ in 1 2; do
    printf '  '
    lab exec "$c" client -- curl -s --max-time 3 --retry 10 --retry-connrefused --retry-delay 1 "http://$ip/" || echo "(no answer yet)"
  done
done

echo
echo "[demo] export Service web of c2 to the clusterset (a ServiceExport):"
lab kubectl c2 -- apply -f - <<'YAML'
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata:
  name: web
  namespace: default
YAML
global_ip=""
for _ in $(seq 1 60); do
  global_ip=$(lab kubectl c2 -- get globalingressip web -o 'jsonpath={.status.allocatedIP}' 2>/dev/null || true)
  [[ -n $global_ip ]] && break
  sleep 0.5
done
if [[ -z $global_ip ]]; then
  echo "[demo] Globalnet gave web no global IP; see: $GNCTL lab kubectl --name $NAME c2 -- logs -n submariner-operator ds/globalnet-gateway -c globalnet" >&2
  exit 1
fi
echo "[demo] the gateways' cable: $(lab kubectl c1 -- get gateway -n submariner-operator -o 'jsonpath={.items[0].status.connections[0].status} to {.items[0].status.connections[0].endpoint.cluster_id}, RTT {.items[0].status.connections[0].latencyRTT.last}')"
echo "[demo] Globalnet gave c2's web the global IP $global_ip; c2's gateway now holds:"
$GNCTL show nat --netns "gn-$NAME-c2-n0"
echo
echo "[demo] c1: the client pod -> c2's web at $global_ip (c1 -> c1 gateway -> VXLAN cable -> c2 gateway -> kube-proxy):"
for _ in 1 2 3 4; do
  printf '  '
  lab exec c1 client -- curl -s --max-time 3 --retry 10 --retry-delay 1 "http://$global_ip/" || echo "(no answer yet)"
done
echo "[demo] c1: the client pod -> web.default.svc.clusterset.local (answered by c1's Lighthouse DNS with $global_ip):"
for _ in 1 2; do
  printf '  '
  lab exec c1 client -- curl -s --max-time 3 --retry 10 --retry-delay 1 http://web.default.svc.clusterset.local/ || echo "(no answer yet)"
done
echo "[demo] the first cross-cluster fetch by clusterset name came $((SECONDS - started)) s after the demo started"
egress=$(lab kubectl c1 -- get clusterglobalegressip cluster-egress.submariner.io -o 'jsonpath={.status.allocatedIPs}')
echo "[demo] what c2's web pods saw as the client address (c1's cluster egress IPs are $egress):"
lab kubectl c2 -- logs -l app=web --tail=2 --prefix | grep GET | sed 's/^/  /' || true

cat <<MSG

Both clusters use pods 10.244.0.0/16 and services 10.96.0.0/16: the same pod IPs exist twice.
Globalnet gave c1 and c2 disjoint global CIDRs (lab status), and c2's web is reachable from c1
at $global_ip and as web.default.svc.clusterset.local; its pods see c1's global egress IP,
never c1's overlapping pod IP.
Explore:
  $GNCTL lab kubectl --name $NAME c2 -- get globalingressips,clusterglobalegressips -A
  $GNCTL show nat --netns gn-$NAME-c1-n0                  (c1 gateway's mappings)
  ip netns exec gn-$NAME-c2-n0 nft list table inet globalnet   (c2 gateway's NAT rules)
  $GNCTL lab kubectl --name $NAME c2 -- get pods -o wide     (real pods on real nodes)
  $GNCTL lab exec --name $NAME c2 client -- ip addr show eth0
Take it down:  make demo-down   (or $GNCTL lab down --name $NAME)
MSG
