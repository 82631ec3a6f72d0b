#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-proxy, kube-scheduler and
# kubelet from Debian's `kubernetes` source package, offline, with Debian's Go
# toolchain. Only the components missing from the cache are built.
#
# Why from source: this machine kind has no Docker (no kind) and Debian ships no
# kube-apiserver binary, but it does ship the 1.20.2 source tree with vendor/.
# The binaries are cached outside the checkout, keyed by version, so only the
# first run pays for the build (about 8 minutes on 2 cores).
#
# The deb-src entry is derived from the machine's own apt configuration: we copy
# its deb822 .sources files with `Types: deb-src` into a private folder and point
# apt-get at it, so the system's lists are never touched and no archive host is
# written anywhere by us.
#
# kubelet and kube-apiserver get one build-time patch each (scripts/patch-k8s.sh):
# kubelet's setupNode would otherwise write host-wide sysctls every time a lab node
# starts, and the API server would refuse an empty string in a custom resource as
# null. A patched binary carries a stamp naming its patch (COMPONENT.patch-id), so
# one built without it (or with an older patch) is rebuilt, never used.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.20.2}"
CACHE_DIR="${GLOBALNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/globalnet}"
BIN_DIR="$CACHE_DIR/k8s/$K8S_VERSION"
WORK_DIR="$CACHE_DIR/k8s-build"
COMPONENTS=(kube-apiserver kube-controller-manager kube-proxy kube-scheduler kubelet)

# The build-time patches (scripts/patch-k8s.sh); each id names a cached build.
PATCH="$(cd "$(dirname "$0")" && pwd)/patch-k8s.sh"
mapfile -t PATCHED < <(bash "$PATCH" --components)
declare -A PATCH_ID
for c in "${PATCHED[@]}"; do PATCH_ID[$c]=$(bash "$PATCH" --id "$c"); done

say() { printf '[build-k8s] %s\n' "$*"; }
die() { printf '[build-k8s] error: %s\n' "$*" >&2; exit 1; }

stamp() { printf '%s\n' "$BIN_DIR/$1.patch-id"; }

# A component counts as cached only when its binary is there and, if it is patched,
# its stamp names the current patch.
have() {
  [[ -x "$BIN_DIR/$1" ]] || return 1
  [[ -z "${PATCH_ID[$1]:-}" ]] || [[ "$(cat "$(stamp "$1")" 2>/dev/null)" == "${PATCH_ID[$1]}" ]]
}

have_all() {
  local c
  for c in "${COMPONENTS[@]}"; do have "$c" || return 1; done
}

if have_all; then
  say "cached binaries in $BIN_DIR (${COMPONENTS[*]})"
  exit 0
fi
# A patched component without its current patch stamp is never used: drop it first.
for c in "${PATCHED[@]}"; do
  if [[ -e "$BIN_DIR/$c" ]] && ! have "$c"; then
    say "cached $c lacks patch ${PATCH_ID[$c]}: rebuilding it"
    rm -f "$BIN_DIR/$c" "$(stamp "$c")"
  fi
done

command -v go >/dev/null || die "Go is missing: install Debian's golang-go (make deps)"
command -v dpkg-source >/dev/null || die "dpkg-source is missing: install dpkg-dev (make deps)"
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
JSONITER=/usr/share/gocode/src/github.com/json-iterator/go
[[ -d $REFLECT2 ]] || die "missing $REFLECT2: install golang-github-modern-go-reflect2-dev"
[[ -d $JSONITER ]] || die "missing $JSONITER: install golang-github-json-iterator-go-dev"

mkdir -p "$WORK_DIR" "$BIN_DIR"
SRC_ROOT="$WORK_DIR/src"

# --- 1. fetch the source package through a private deb-src configuration -----
src_tree=$(find "$SRC_ROOT" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' 2>/dev/null | head -n1 || true)
if [[ -z "$src_tree" ]]; then
  apt_dir="$WORK_DIR/apt"
  rm -rf "$apt_dir"
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial"
  found=0
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$apt_dir/sources.list.d/$(basename "$f")"
    found=1
  done
  if [[ -f /etc/apt/sources.list ]]; then
    grep -E '^deb ' /etc/apt/sources.list | sed -E 's/^deb /deb-src /' >"$apt_dir/sources.list.d/derived.list" || true
    [[ -s "$apt_dir/sources.list.d/derived.list" ]] && found=1
  fi
  [[ $found == 1 ]] || die "no apt sources found in /etc/apt to derive a deb-src entry from"
  apt_opts=(-o "Dir::Etc::SourceParts=$apt_dir/sources.list.d" -o "Dir::Etc::SourceList=/dev/null"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Debug::NoLocking=1")
  say "updating a private deb-src index (system lists untouched)"
  apt-get -q "${apt_opts[@]}" update >"$WORK_DIR/apt-update.log" 2>&1 \
    || die "apt-get update for deb-src failed; see $WORK_DIR/apt-update.log"
  mkdir -p "$SRC_ROOT"
  say "downloading Debian's kubernetes source package (about 34 MB)"
  (cd "$SRC_ROOT" && apt-get -q "${apt_opts[@]}" source kubernetes >"$WORK_DIR/apt-source.log" 2>&1) \
    || die "apt-get source kubernetes failed; see $WORK_DIR/apt-source.log"
  src_tree=$(find "$SRC_ROOT" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
  [[ -n "$src_tree" ]] || die "source tree not found after apt-get source"
fi
say "source tree: $src_tree"

# --- 2. vendor fix: reflect2 of 2019 crashes under Go >= 1.18 ----------------
if [[ ! -f "$src_tree/.globalnet-vendor-fixed" ]]; then
  say "replacing vendored reflect2 and json-iterator with Debian's Go-1.18-safe copies"
  for pair in "github.com/modern-go/reflect2:$REFLECT2" "github.com/json-iterator/go:$JSONITER"; do
    rel=${pair%%:*}; from=${pair#*:}
    rm -rf "$src_tree/vendor/$rel"
    mkdir -p "$src_tree/vendor/$rel"
    # Only Go sources: Debian's copies carry tests and docs we do not need.
    (cd "$from" && find . -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cp {} "$src_tree/vendor/$rel/" \;)
  done
  touch "$src_tree/.globalnet-vendor-fixed"
fi
for c in "${PATCHED[@]}"; do bash "$PATCH" "$c" "$src_tree"; done

# --- 3. build ------------------------------------------------------------------
# Kubernetes' own make (as Debian's rules use it): it runs the code generators
# (the OpenAPI definitions are not in the source tarball) and builds in GOPATH
# mode, which is what 1.20's vendor/ tree expects.
export GOCACHE="$WORK_DIR/gocache" GOPROXY=off CGO_ENABLED=0
export KUBE_GIT_VERSION="$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
missing=()
for c in "${COMPONENTS[@]}"; do have "$c" || missing+=("cmd/$c"); done
say "building ${missing[*]} with $(go version | cut -d' ' -f3); a cold build of all five takes about 8 minutes on 2 cores"
start=$(date +%s)
(
  cd "$src_tree"
  # Print a progress line every minute: the build is otherwise silent.
  # The ticker kills its own sleep when stopped, so no stray process holds our output.
  ( trap 'kill $s 2>/dev/null; exit 0' TERM
    while :; do sleep 60 & s=$!; wait $s
      echo "[build-k8s] ... still building ($(( ($(date +%s) - start) / 60 )) min)"; done ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null' EXIT
  HOME="$WORK_DIR/home" make WHAT="${missing[*]}" >"$WORK_DIR/build.log" 2>&1
) || { tail -n 20 "$WORK_DIR/build.log" >&2; die "build failed; see $WORK_DIR/build.log"; }
for c in "${COMPONENTS[@]}"; do
  have "$c" && continue
  out=$(find "$src_tree/_output" -path '*/bin/*' -name "$c" -type f | head -n1)
  [[ -n "$out" ]] || die "$c missing from the build output"
  "$out" --version >/dev/null 2>&1 || die "built $c does not run: $out --version failed"
  cp "$out" "$BIN_DIR/$c.tmp" && mv "$BIN_DIR/$c.tmp" "$BIN_DIR/$c"
  # The stamp goes last: it vouches for a binary built from the patched tree.
  [[ -z "${PATCH_ID[$c]:-}" ]] || echo "${PATCH_ID[$c]}" >"$(stamp "$c")"
done
say "built ${missing[*]} in $(( $(date +%s) - start )) s"
say "binaries ready in $BIN_DIR"
# The build tree and Go cache take several GB; the binaries are all we keep.
[[ -n "${GLOBALNET_KEEP_BUILD:-}" ]] || { rm -rf "$WORK_DIR"; say "removed the build tree"; }
