#!/usr/bin/env bash
# The demo: two lab clusters with identical CIDRs, shown and exercised.
set -euo pipefail
cd "$(dirname "$0")/.."
GNCTL=.venv/bin/gnctl
NAME=${GNCTL_LAB:-demo}
if [[ -f /run/globalnet/lab/$NAME/state.json ]]; then
  echo "[demo] lab $NAME is already up; taking it down first"
  $GNCTL lab down --name "$NAME"
fi
$GNCTL lab up --name "$NAME" --clusters 2 --nodes 2
$GNCTL lab status --name "$NAME"
echo
for c in c1 c2; do
  ip=$($GNCTL lab kubectl --name "$NAME" "$c" -- get service web -o 'jsonpath={.spec.clusterIP}' 2>/dev/null)
  echo "[demo] $c: client-0 -> Service web ($ip) through the real kube-proxy:"
  for _ in 1 2 3 4; do
    printf '  '
    $GNCTL lab exec --name "$NAME" "$c" client-0 -- curl -s --max-time 3 --retry 10 --retry-connrefused --retry-delay 1 "http://$ip/" || echo "(no answer yet)"
  done
done
cat <<MSG

Both clusters use pods 10.244.0.0/16 and services 10.96.0.0/16: the same pod IPs exist twice.
Explore:
  $GNCTL lab kubectl --name $NAME c1 -- get pods -o wide
  $GNCTL lab exec --name $NAME c2 client-0 -- ip addr show eth0
  ip netns exec gn-$NAME-c1-n1 iptables-save -t nat | grep KUBE-SVC
Take it down:  make demo-down   (or $GNCTL lab down --name $NAME)
MSG
