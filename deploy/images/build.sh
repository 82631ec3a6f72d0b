#!/usr/bin/env bash
# Build the lab's container images offline, without Docker: pause (the pod
# sandbox), globalnet (the agents) and test (the test workload).
#
#   deploy/images/build.sh [--force] [NAME...]     (default: every image)
#
# Images cannot be pulled on this machine kind, so they are made here: a Debian
# bookworm rootfs from `mmdebstrap` with the packages of deploy/images/NAME.packages
# (the same lists deploy/Dockerfile installs), packed by `umoci` into an OCI
# layout, copied by `skopeo` to a docker-archive that `ctr -n k8s.io images
# import` takes. The archive is tagged globalnet/NAME:lab and globalnet/NAME:KEY.
#
# Cache: $CACHE/images/NAME-KEY.tar, with NAME.tar linking to the current one.
# KEY hashes everything the image is made from: this script, the package list,
# the image's own files and, for globalnet, the project's wheel (its RECORD of
# file hashes, so timestamps do not count). A warm run only rebuilds the wheel.
#
# The globalnet image has two layers, because the project changes far more often
# than what it runs on: the base (Debian packages and the PyPI dependencies,
# cached as an OCI layout keyed by the package list and the wheel's
# Requires-Dist) and the project itself, installed by the machine's
# /usr/bin/python3, the same Debian Python as the image's (checked). A code
# change costs seconds, not a new rootfs.
#
# Apt goes through the machine's own configuration: the mirror arguments are the
# machine's bookworm sources files, and the Acquire:: options the machine sets
# (a proxy, Check-Valid-Until, ...) are passed to mmdebstrap for the build only;
# no archive host is named here. PyPI packages are fetched as wheels by the
# project's venv pip and installed with --no-index, by a pip run from its wheel
# and not kept in the image.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE_DIR="${GLOBALNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/globalnet}"
OUT_DIR="$CACHE_DIR/images"
WORK_DIR="$CACHE_DIR/images-build"
PYTHON="${GLOBALNET_PYTHON:-$ROOT/.venv/bin/python}"
HOST_PYTHON=/usr/bin/python3
SUITE=bookworm
ALL=(pause globalnet test)

say() { printf '[images] %s\n' "$*"; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

force=0
wanted=()
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) [[ " ${ALL[*]} " == *" $arg "* ]] || die "unknown image $arg (images: ${ALL[*]})"
       wanted+=("$arg") ;;
  esac
done
[[ ${#wanted[@]} -gt 0 ]] || wanted=("${ALL[@]}")

# The package names of one list: comments and blank lines dropped.
packages() { sed -e 's/#.*//' "$HERE/$1.packages" | tr -s ' \t\n' '\n' | sed '/^$/d'; }

sha() { sha256sum | cut -c1-16; }

# --- the project's wheel (globalnet image) -------------------------------------
# Built from a copy of the work tree, so a stale build/ folder in the checkout can
# never add removed modules to it. Beside it: requirements.txt (its Requires-Dist
# without extras) and record.sha (a digest of its RECORD of file hashes).
PROJECT="$WORK_DIR/project"
project_wheel() {
  [[ -x $PYTHON ]] || die "no Python at $PYTHON: run \`make venv\` (or set GLOBALNET_PYTHON)"
  rm -rf "$PROJECT" && mkdir -p "$PROJECT/src" "$PROJECT/dist"
  rsync -a --exclude=.git --exclude=.venv --exclude=build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude='.*_cache' --exclude=.hypothesis --exclude=tests \
    "$ROOT/" "$PROJECT/src/"
  "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation --wheel-dir "$PROJECT/dist" \
    "$PROJECT/src" >"$PROJECT/wheel.log" 2>&1 || {
      tail -n 15 "$PROJECT/wheel.log" >&2
      die "image globalnet: the project wheel did not build; see $PROJECT/wheel.log"; }
  local wheel
  wheel=$(find "$PROJECT/dist" -name 'globalnet-*.whl' | head -n1)
  [[ -n $wheel ]] || die "image globalnet: no wheel in $PROJECT/dist"
  "$PYTHON" - "$wheel" "$PROJECT" <<'EOF'
import hashlib, sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1]) as z:
    info = next(n.split("/")[0] for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    record = sorted(l for l in z.read(f"{info}/RECORD").decode().splitlines()
                    if not l.startswith(f"{info}/RECORD,"))
    meta = z.read(f"{info}/METADATA").decode().splitlines()
reqs = sorted(l.split(":", 1)[1].strip() for l in meta if l.startswith("Requires-Dist:")
              and "extra ==" not in l)
out = Path(sys.argv[2])
(out / "requirements.txt").write_text("".join(r + "\n" for r in reqs))
(out / "record.sha").write_text(hashlib.sha256("\n".join(record).encode()).hexdigest() + "\n")
EOF
  echo "$wheel"
}

# A pip that runs from its wheel file: Debian's (python3-pip-whl), else PyPI's.
pip_wheel() {
  local found
  found=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | head -n1 || true)
  if [[ -z $found ]]; then
    mkdir -p "$WORK_DIR/pip"
    "$PYTHON" -m pip download -q --no-deps --dest "$WORK_DIR/pip" pip >/dev/null \
      || die "could not fetch pip's wheel"
    found=$(ls "$WORK_DIR/pip"/pip-*.whl | head -n1)
  fi
  echo "$found"
}

# --- the cache key --------------------------------------------------------------
image_key() {
  local name=$1
  {
    echo "$SUITE $(dpkg --print-architecture)"
    sha256sum "$HERE/build.sh" | cut -d' ' -f1
    packages "$name"
    case $name in
      test) sha256sum "$HERE/test/echo-server.py" | cut -d' ' -f1 ;;
      globalnet) cat "$PROJECT/requirements.txt" ;;
    esac
  } | sha
}

# --- apt through the machine's own configuration --------------------------------
# Mirror arguments: the machine's sources for $SUITE (deb822 files as they are,
# one-line entries gathered into one file).
apt_sources() {
  local f list="$WORK_DIR/apt/machine.list"
  mkdir -p "$WORK_DIR/apt" && : >"$list"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && grep -qE "^Suites:.*\\b$SUITE\\b" "$f" && echo "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] && grep -E "^deb[[:space:]].*[[:space:]]$SUITE(-[a-z]+)?[[:space:]]" "$f" >>"$list"
  done
  [[ -s $list ]] && echo "$list"
  return 0
}

# The Acquire:: options the machine's apt configuration sets, beyond apt's
# defaults (found by dumping the configuration with and without its files).
apt_options() {
  local d="$WORK_DIR/apt" out="$WORK_DIR/apt/machine.conf"
  mkdir -p "$d/empty"
  printf 'Dir::Etc::Parts "%s";\nDir::Etc::Main "/dev/null";\n' "$d/empty" >"$d/defaults.conf"
  comm -23 <(apt-config dump --format '%f "%v";%n' | sort) \
    <(APT_CONFIG="$d/defaults.conf" apt-config dump --format '%f "%v";%n' | sort) \
    | grep -E '^Acquire::' | grep -vE '^Acquire::IndexTargets::' >"$out" || true
  echo "$out"
}

APT_OPTS="" SOURCES=()
apt_setup() {
  [[ -z $APT_OPTS ]] || return 0
  APT_OPTS=$(apt_options)
  mapfile -t SOURCES < <(apt_sources)
  [[ ${#SOURCES[@]} -gt 0 ]] || die "no $SUITE apt sources in /etc/apt to build images from"
}

# --- steps ---------------------------------------------------------------------------
# Runs a long step with a progress line every 30 s; its output goes to $log.
step() {
  local what=$1; shift
  say "$name: $what"
  local t0=$SECONDS
  # The ticker kills its own sleep when told to stop, so no stray process keeps
  # the caller's output open.
  ( trap 'kill $s 2>/dev/null; exit 0' TERM
    while :; do sleep 30 & s=$!; wait $s; say "$name: ... still $what ($(( SECONDS - t0 )) s)"; done ) &
  local ticker=$!
  if ! "$@" >>"$log" 2>&1; then
    kill "$ticker" 2>/dev/null || true
    tail -n 15 "$log" >&2
    die "image $name failed while $what; see $log"
  fi
  kill "$ticker" 2>/dev/null || true
}

# The build-time apt options and the machine's resolv.conf and hostname stay out
# of the image (the runtime mounts its own over the two files).
SCRUB=': >"$1/etc/resolv.conf"; echo localhost >"$1/etc/hostname"; rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap"'

# mmdebstrap NAME OUT.tar [options...]: a rootfs with the image's package list.
bootstrap() {
  local list=$1 out=$2; shift 2
  apt_setup
  step "bootstrapping $SUITE ($(packages "$list" | wc -l) packages)" \
    env TMPDIR="$(dirname "$out")" mmdebstrap --mode=unshare --format=tar \
    "--aptopt=$APT_OPTS" --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "--include=$(packages "$list" | paste -sd, -)" "$@" "$SUITE" "$out" "${SOURCES[@]}"
}

# pack_oci DIR TAG ROOTFS.tar: a new OCI layout with the rootfs as its one layer.
pack_oci() {
  umoci init --layout "$1"
  umoci new --image "$1:$2"
  umoci raw add-layer --image "$1:$2" "$3"
  rm -f "$3"
}

# archive W KEY CONFIG...: set the image config, write the docker-archive into the cache.
archive() {
  local w=$1 key=$2; shift 2
  umoci config --image "$w/oci:$key" --author=globalnet --config.workingdir=/ \
    --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$w/policy.json"
  TMPDIR="$w" skopeo --policy "$w/policy.json" copy -q "oci:$w/oci:$key" \
    "docker-archive:$w/image.tar:globalnet/$name:lab" --additional-tag "globalnet/$name:$key"
  mv "$w/image.tar" "$OUT_DIR/$name-$key.tar"
}

# --- the images ------------------------------------------------------------------------
build_pause() {
  local w=$1 key=$2
  # Extract only: nothing installed, just busybox and two links (the extract
  # variant runs extract hooks, not customize hooks).
  bootstrap pause "$w/rootfs.tar" --variant=extract \
    --extract-hook='ln -s busybox "$1/bin/sh"; ln -s busybox "$1/bin/sleep"' --extract-hook="$SCRUB"
  step "packing the OCI layer" pack_oci "$w/oci" "$key" "$w/rootfs.tar"
  # Sleeps until told to stop: a sandbox must keep running, and a PID 1 without a
  # SIGTERM handler would make every pod delete wait for its grace period.
  step "writing the docker-archive" archive "$w" "$key" \
    --config.entrypoint=/bin/sh --config.entrypoint=-c \
    "--config.entrypoint=trap 'exit 0' TERM INT; while :; do sleep 3600 & wait \$!; done"
}

build_test() {
  local w=$1 key=$2
  bootstrap test "$w/rootfs.tar" --variant=minbase \
    --customize-hook="upload $HERE/test/echo-server.py /usr/local/bin/gn-echo" \
    --customize-hook='chmod 0755 "$1/usr/local/bin/gn-echo"' --customize-hook="$SCRUB"
  step "packing the OCI layer" pack_oci "$w/oci" "$key" "$w/rootfs.tar"
  step "writing the docker-archive" archive "$w" "$key" --config.cmd=/usr/local/bin/gn-echo \
    --config.exposedports=8080/tcp --config.exposedports=8080/udp
}

# The base layer: Debian packages and the PyPI dependencies; cached as an OCI
# layout, with the image's Python version beside it. The dependencies' bytecode is
# compiled with unchecked hashes, not timestamps: mmdebstrap clamps the rootfs's
# mtimes when it packs it, which left every timestamped .pyc stale - so each agent
# process recompiled ~200 modules (pyroute2, urllib3, ...) in memory at start, about
# 6.5 MB RSS apiece. A hash .pyc stays valid whatever the packing does to mtimes.
build_globalnet_base() {
  local w=$1 base=$2 pip
  pip=$(pip_wheel)
  mkdir -p "$w/wheels" && cp "$pip" "$PROJECT/requirements.txt" "$w/wheels/"
  step "fetching the PyPI dependencies as wheels" \
    "$PYTHON" -m pip wheel -q --wheel-dir "$w/wheels" -r "$PROJECT/requirements.txt"
  bootstrap globalnet "$w/rootfs.tar" --variant=minbase \
    --customize-hook="mkdir -p \"\$1/tmp/gn-wheels\" && cp -a '$w/wheels/.' \"\$1/tmp/gn-wheels/\"" \
    --customize-hook="chroot \"\$1\" python3 /tmp/gn-wheels/$(basename "$pip")/pip install -q --no-index --no-compile --find-links /tmp/gn-wheels --break-system-packages --root-user-action=ignore -r /tmp/gn-wheels/requirements.txt" \
    --customize-hook='rm -rf "$1/tmp/gn-wheels"' \
    --customize-hook='chroot "$1" python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /usr/local/lib' \
    --customize-hook='chroot "$1" python3 -c "import nftables, bcc, kubernetes"' \
    --customize-hook="chroot \"\$1\" python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' >'$w/python-version'" \
    --customize-hook="$SCRUB"
  step "packing the base layer" pack_oci "$w/base" base "$w/rootfs.tar"
  mv "$w/python-version" "$w/base/python-version.txt"
  find "$OUT_DIR" -maxdepth 1 -name 'globalnet-base-*' -exec rm -rf {} +
  mv -T "$w/base" "$base"
}

# The project layer: the wheel installed under a staging root by the machine's
# Debian Python (the same version as the image's), compiled for its final paths.
project_layer() {
  local w=$1 wheel=$2 pip
  pip=$(pip_wheel)
  rm -rf "$w/stage" && mkdir -m 0755 -p "$w/stage"
  "$HOST_PYTHON" "$pip/pip" install -q --no-deps --no-index --no-compile --root "$w/stage" \
    --break-system-packages --root-user-action=ignore --no-warn-script-location "$wheel"
  "$HOST_PYTHON" -m compileall -q -s "$w/stage" -p / "$w/stage/usr/local/lib"
  tar --numeric-owner --owner=0 --group=0 -C "$w/stage" -cf "$w/project.tar" usr
}

build_globalnet() {
  local w=$1 key=$2 base="$OUT_DIR/globalnet-base-$3" wheel=$4 host image
  if [[ $force == 1 || ! -f $base/index.json ]]; then
    build_globalnet_base "$w" "$base"
  else
    say "$name: base layer cached ($(basename "$base"))"
  fi
  [[ -x $HOST_PYTHON ]] || die "image globalnet: $HOST_PYTHON is missing"
  host=$("$HOST_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  image=$(cat "$base/python-version.txt")
  [[ $host == "$image" ]] || die "image globalnet: $HOST_PYTHON is $host but the image's python3 is $image"
  step "installing the project layer" project_layer "$w" "$wheel"
  cp -a "$base" "$w/oci" && rm -f "$w/oci/python-version.txt"
  step "adding the project layer" umoci raw add-layer --image "$w/oci:base" --tag "$key" "$w/project.tar"
  step "writing the docker-archive" archive "$w" "$key" --config.cmd=gnctl --config.cmd=--help
}

# --- main ---------------------------------------------------------------------------
for tool in mmdebstrap umoci skopeo rsync; do
  command -v "$tool" >/dev/null || die "$tool is missing: run \`make deps\`"
done
mkdir -p "$OUT_DIR" "$WORK_DIR"
exec 9>"$OUT_DIR/.lock"
flock 9
start=$SECONDS
wheel="" base_key=""
for name in "${wanted[@]}"; do
  if [[ $name == globalnet ]]; then
    wheel=$(project_wheel)
    base_key=$(image_key globalnet)
    key=$(printf '%s\n' "$base_key" "$(cat "$PROJECT/record.sha")" | sha)
  else
    key=$(image_key "$name")
  fi
  archive_path="$OUT_DIR/$name-$key.tar"
  if [[ $force == 1 || ! -s $archive_path ]]; then
    w="$WORK_DIR/$name" log="$WORK_DIR/$name.log"
    rm -rf "$w" && mkdir -p "$w" && : >"$log"
    t0=$SECONDS
    case $name in
      pause) build_pause "$w" "$key" ;;
      test) build_test "$w" "$key" ;;
      globalnet) build_globalnet "$w" "$key" "$base_key" "$wheel" ;;
    esac
    rm -rf "$w" "$log"
    say "$name: built in $(( SECONDS - t0 )) s"
  fi
  ln -sfn "$(basename "$archive_path")" "$OUT_DIR/$name.tar.new"
  mv -T "$OUT_DIR/$name.tar.new" "$OUT_DIR/$name.tar"
  # Archives of older keys are never used again.
  find "$OUT_DIR" -maxdepth 1 -name "$name-*.tar" ! -name "$(basename "$archive_path")" -delete
  say "$name: $archive_path ($(du -m "$archive_path" | cut -f1) MB)"
done
rm -rf "$PROJECT" "$WORK_DIR/apt" "$WORK_DIR/pip"
rmdir "$WORK_DIR" 2>/dev/null || true
say "images ready in $OUT_DIR ($(( SECONDS - start )) s)"
