#!/usr/bin/env bash
# Add or update the clusterset.local forward block in CoreDNS's Corefile.
#
#   add-clusterset-forward.sh LIGHTHOUSE_DNS_IP [ZONE] [--dry-run]
#
# Idempotent: the block sits between marker comments and is replaced, not
# appended twice. CoreDNS's `reload` plugin (in the default kubeadm Corefile)
# picks the change up within about 30 s; no restart is needed. Needs kubectl with
# rights on ConfigMap kube-system/coredns, and python3.
set -euo pipefail
dry=no
args=()
for a in "$@"; do
  if [[ $a == --dry-run ]]; then dry=yes; else args+=("$a"); fi
done
ip=${args[0]:?usage: $0 LIGHTHOUSE_DNS_IP [ZONE] [--dry-run]}
zone=${args[1]:-clusterset.local}
[[ $ip =~ ^[0-9a-fA-F.:]+$ ]] || { echo "not an IP address: $ip" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)

current=$(kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
block=$(sed -e "s/LIGHTHOUSE_DNS_IP/${ip}/" -e "s/^clusterset\.local:53/${zone}:53/" \
  "$here/Corefile.clusterset" | grep -v '^#')

patch=$(CURRENT="$current" BLOCK="$block" python3 - <<'PY'
import json, os, re
begin, end = "# BEGIN globalnet clusterset forward", "# END globalnet clusterset forward"
current = re.sub(re.escape(begin) + ".*?" + re.escape(end) + "\n?", "", os.environ["CURRENT"], flags=re.S)
corefile = current.rstrip("\n") + "\n" + begin + "\n" + os.environ["BLOCK"].strip("\n") + "\n" + end + "\n"
print(json.dumps({"data": {"Corefile": corefile}}))
PY
)
if [[ $dry == yes ]]; then
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])["data"]["Corefile"])' "$patch"
  exit 0
fi
kubectl -n kube-system patch configmap coredns --type merge -p "$patch"
echo "coredns: ${zone} now forwarded to ${ip}"
