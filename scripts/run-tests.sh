#!/usr/bin/env bash
# Run the test tiers inside a throwaway network namespace.
#
# pytest starts under `unshare --net` with only loopback up, so no test, not even
# a buggy one, can change the machine's own interfaces, routes or nftables
# ruleset. Namespaces the tests create are linked only to each other.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[[ $(id -u) -eq 0 ]] || { echo "[test] error: the privileged tiers need root" >&2; exit 1; }
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] import contracts"
.venv/bin/lint-imports --no-cache
echo "[test] mypy --strict"
.venv/bin/mypy --strict --no-error-summary globalnet lab cli kube datapath lighthouse gateway bench deploy verify ops deferred_import
echo "[test] pytest in a fresh network namespace"
set +e
unshare --net --fork -- bash -c 'ip link set lo up && exec "$0" -m pytest "$@"' "$PY" "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "[test] error: pytest collected no tests" >&2
  exit 1
fi
exit $rc
