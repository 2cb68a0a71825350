#!/usr/bin/env bash
# make iot-check: the consumer on a real aarch64 (arm64) Debian userland, under qemu-user
# emulation, against a chain running natively on this x86-64 machine.
#
#   1. tools: qemu-user-static, binfmt-support, debootstrap (Debian packages; apt-get if missing),
#      and an aarch64 binfmt_misc handler with the F flag, so a chroot runs arm64 binaries;
#   2. an arm64 Debian bookworm minbase root, made once with debootstrap (cached in $IOT_WORK);
#   3. a fresh "board": a copy of that root, with the files a user would copy to a board
#      (the wheel, requirements.lock, deploy/install-consumer.sh, deploy/dr-consumer.service);
#   4. docs/iot.md's install, inside the arm64 root: sh install-consumer.sh WHEEL --constraints
#      requirements.lock (apt-get python3-venv, user, venv, pip install with aarch64 wheels from PyPI);
#   5. the cycle (tools/iot/scenario.py): ganache and the utility natively, the consumer daemon
#      under emulation as the unit's user; it must bid, win, be paid and record its result.
#
# Needs root, network access to a Debian mirror and to the Python package index, and the project
# bootstrapped (make bootstrap: .venv and node_modules). Timings go to $IOT_WORK/iot-check.json.
# Env: IOT_WORK (default /var/tmp/dr-iot-check), IOT_MIRROR (default: the Debian mirror of this
# machine's own apt sources, found by tools/iot/apt_mirror.py), IOT_SUITE (bookworm), IOT_FRESH_BASE=1 to rebuild the cached root, IOT_WINDOW (bidding s, 30),
# IOT_REUSE_BOARD=1 to skip the install and rerun only the account and cycle steps on the last board.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${IOT_WORK:-/var/tmp/dr-iot-check}
SUITE=${IOT_SUITE:-bookworm}
WINDOW=${IOT_WINDOW:-30}
BASE=$WORK/rootfs-base
BOARD=$WORK/board
PY=$REPO/.venv/bin/python
declare -a TIMINGS=()
T_ALL=$(date +%s.%N)

say() { echo "[iot-check $(date +%H:%M:%S)] $*"; }
die() { echo "iot-check: error: $*" >&2; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
timed() {  # timed NAME command...: run it, record its wall time
  local name=$1 t; shift
  t=$(date +%s.%N)
  "$@"
  TIMINGS+=("$name=$(elapsed "$t")")
  say "$name: $(elapsed "$t") s"
}
# This host's pip may trust an extra CA (a TLS-inspecting proxy: pip.conf cert= / PIP_CERT).
# The board gets the same bundle, else pip there cannot reach PyPI; on a real board nothing is needed.
HOST_CERT=${PIP_CERT:-$("$PY" -m pip config get global.cert 2>/dev/null || true)}
BOARD_ENV=()
in_board() { chroot "$BOARD" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 "${BOARD_ENV[@]}" "$@"; }

[ "$(id -u)" = 0 ] || die "run as root: debootstrap, chroot and binfmt_misc need it"
[ -x "$PY" ] && [ -e "$REPO/node_modules/.bin/ganache" ] || die "bootstrap the project first: make bootstrap"
MIRROR=${IOT_MIRROR:-}
if [ -z "$MIRROR" ]; then
  MIRROR=$("$PY" "$REPO/tools/iot/apt_mirror.py") \
    || die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/; set IOT_MIRROR"
  say "Debian mirror from this machine's apt sources: $MIRROR (IOT_MIRROR overrides it)"
fi
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock -n 9 || die "another iot-check is using $WORK"

# -- 1. tools and the aarch64 binfmt handler -------------------------------------------------
install_tools() {
  local missing=()
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ "$(uname -m)" != aarch64 ]; then
    [ -f /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
      || die "binfmt_misc cannot be mounted here (no privileges?): arm64 binaries cannot run in a chroot"
    [ -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 2>/dev/null \
      || update-binfmts --import qemu-aarch64 2>/dev/null || true
    [ -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "no qemu-aarch64 binfmt_misc handler could be registered"
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
      || die "the qemu-aarch64 handler lacks the F (fix-binary) flag; chroot cannot find the interpreter"
    say "binfmt: $(grep -E '^(interpreter|flags)' /proc/sys/fs/binfmt_misc/qemu-aarch64 | tr '\n' ' ')"
  fi
}
timed tools install_tools

# -- 2. the arm64 root, made once ------------------------------------------------------------
make_base() {
  if [ "${IOT_FRESH_BASE:-0}" = 1 ]; then rm -rf "$BASE"; fi
  if [ -f "$BASE/.iot-complete" ]; then say "reusing $BASE (IOT_FRESH_BASE=1 rebuilds it)"; return; fi
  rm -rf "$BASE" "$BASE.partial"
  mkdir -p "$WORK"
  say "debootstrap --arch=arm64 --variant=minbase $SUITE (one time, several minutes)"
  debootstrap --arch=arm64 --variant=minbase "$SUITE" "$BASE.partial" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  mv "$BASE.partial" "$BASE"
  touch "$BASE/.iot-complete"
}
timed arm64_root make_base

# -- 3. a fresh board -----------------------------------------------------------------------
cleanup() {
  for m in "$BOARD/dev/pts" "$BOARD/dev" "$BOARD/proc"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
}
trap cleanup EXIT
fresh_board() {
  cleanup
  if mountpoint -q "$BOARD/dev" 2>/dev/null || mountpoint -q "$BOARD/proc" 2>/dev/null; then
    die "$BOARD/dev or /proc is still mounted; unmount it before a fresh board is made"
  fi
  rm -rf --one-file-system "$BOARD"
  cp -a "$BASE" "$BOARD"
  mount_board
  cp -L /etc/resolv.conf "$BOARD/etc/resolv.conf"
  if [ -n "$HOST_CERT" ] && [ -f "$HOST_CERT" ]; then
    mkdir -p "$BOARD/etc/ssl"
    cp -L "$HOST_CERT" "$BOARD/etc/ssl/host-pip-ca.crt"
    BOARD_ENV=(PIP_CERT=/etc/ssl/host-pip-ca.crt)
    say "this host's pip trusts $HOST_CERT: passing it to the board's pip (PIP_CERT)"
  fi
  local arch
  arch=$(in_board uname -m)
  [ "$arch" = aarch64 ] || die "the board root reports $arch, not aarch64"
  say "board root: Debian $(in_board cat /etc/debian_version) $arch, $(du -shx "$BOARD" | cut -f1)"
  mkdir -p "$BOARD/root/dr-install"
  local wheel
  wheel=$("$PY" "$REPO/tools/iot/build_wheel.py" "$WORK/dist")
  cp "$wheel" "$REPO/requirements.lock" "$REPO/deploy/install-consumer.sh" "$REPO/deploy/dr-consumer.service" \
    "$BOARD/root/dr-install/"
  WHEEL_NAME=$(basename "$wheel")
  say "copied to the board: $(ls "$BOARD/root/dr-install" | tr '\n' ' ')"
}
mount_board() {
  mountpoint -q "$BOARD/proc" || mount -t proc proc "$BOARD/proc"
  mountpoint -q "$BOARD/dev" || mount --bind /dev "$BOARD/dev"
}
if [ "${IOT_REUSE_BOARD:-0}" = 1 ] && [ -x "$BOARD/opt/demand-response/.venv/bin/dr" ]; then
  say "IOT_REUSE_BOARD=1: reusing the installed board in $BOARD (steps 3-4 skipped)"
  mount_board
  REUSED=1
else
  timed fresh_board fresh_board
  REUSED=0
fi

# -- 4. docs/iot.md's install, emulated --------------------------------------------------------
board_install() {
  if ! in_board sh /root/dr-install/install-consumer.sh "/root/dr-install/$WHEEL_NAME" \
      --constraints /root/dr-install/requirements.lock > "$WORK/install.log" 2>&1; then
    tail -30 "$WORK/install.log"
    die "install-consumer.sh failed in the arm64 root (log: $WORK/install.log)"
  fi
  cat "$WORK/install.log"
}
[ "$REUSED" = 1 ] || timed board_install board_install

SITE=$(echo "$BOARD"/opt/demand-response/.venv/lib/python3*/site-packages)
in_board /opt/demand-response/.venv/bin/pip freeze --disable-pip-version-check > "$WORK/board-freeze.txt"
BOARD_PY=$(in_board /opt/demand-response/.venv/bin/python -c \
  'import platform, sys; print(platform.machine(), platform.python_version(), sys.platform)')
SO=$(find "$SITE" -name '*.so' -path '*cytoolz*' | head -1)
say "board python: $BOARD_PY; $(wc -l < "$WORK/board-freeze.txt") packages; $(du -sh "$SITE" | cut -f1) site-packages"
say "a compiled dependency: $(file -b "$SO" | cut -d, -f1-2)"
for heavy in brownie solcx numpy flask pandapower; do
  ! in_board /opt/demand-response/.venv/bin/python -c "import $heavy" 2>/dev/null || die "$heavy is importable on the board"
done
timed board_cli in_board /opt/demand-response/.venv/bin/dr consumer run --help > /dev/null

# -- 5. the board's account, as docs/iot.md says: a keystore and the password in the secret file.
# On a real chain you would `dr accounts new home` and fund it; here the key is the dev chain's
# account #1, which ganache funds.
board_account() {
  local key pass
  key=$("$PY" -c "import sys; sys.path.insert(0, '$REPO'); from demand_response.devchain import dev_private_keys; print(dev_private_keys(2)[1])")
  pass=iot-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$key" > "$BOARD/tmp/iot-key"
  printf '%s\n' "$pass" > "$BOARD/tmp/iot-pass"
  chmod 644 "$BOARD/tmp/iot-key" "$BOARD/tmp/iot-pass"
  in_board sh -c 'cd /opt/demand-response && runuser -u dr -- .venv/bin/dr accounts import home --key-file /tmp/iot-key --password-file /tmp/iot-pass'
  rm -f "$BOARD/tmp/iot-key" "$BOARD/tmp/iot-pass"
  printf 'CONSUMER_ACCOUNT_PASS=%s\n' "$pass" > "$BOARD/etc/dr/consumer.secret"
  ls -l "$BOARD/etc/dr/consumer.secret" "$BOARD"/opt/demand-response/keystores/
}
timed board_account board_account

# -- 6. the cycle: native chain and utility, emulated consumer ------------------------------
DR_UID=$(in_board id -u dr)
DR_GID=$(in_board id -g dr)
EXEC=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$BOARD/etc/systemd/system/dr-consumer.service")
[ "$EXEC" = /opt/demand-response/.venv/bin/dr ] || die "unexpected ExecStart in the installed unit: $EXEC"
install -d -o "$DR_UID" -g "$DR_GID" "$BOARD/opt/demand-response/database/state"
# Started the way the unit starts it: as dr, in /opt/demand-response (its .env names the keystore),
# with the secret file's password in the environment (systemd's EnvironmentFile=, read as root).
cycle() {
  local secret
  secret=$(sed -n 's/^CONSUMER_ACCOUNT_PASS=//p' "$BOARD/etc/dr/consumer.secret")
  "$PY" "$REPO/tools/iot/scenario.py" --work "$BOARD/opt/demand-response/database" \
    --guest-dir /opt/demand-response/database --bidding-window "$WINDOW" --poll-interval 2 --startup-timeout 300 \
    --keystore --json "$WORK/cycle.json" -- \
    chroot --userspec="$DR_UID:$DR_GID" "$BOARD" /usr/bin/env -i -C /opt/demand-response \
    PATH=/usr/bin:/bin HOME=/opt/demand-response LANG=C.UTF-8 CONSUMER_ACCOUNT_PASS="$secret" "$EXEC"
}
timed cycle cycle

{
  echo "{"
  echo "  \"host\": \"$(uname -m) $(nproc) cpus\", \"board\": \"$BOARD_PY\","
  echo "  \"board_packages\": $(wc -l < "$WORK/board-freeze.txt"), \"board_site_packages_kb\": $(du -sk "$SITE" | cut -f1),"
  printf '  "steps_s": {'
  sep=""
  for t in "${TIMINGS[@]}"; do printf '%s"%s": %s' "$sep" "${t%%=*}" "${t#*=}"; sep=", "; done
  echo "},"
  echo "  \"total_s\": $(elapsed "$T_ALL"),"
  echo "  \"cycle\": $(cat "$WORK/cycle.json")"
  echo "}"
} > "$WORK/iot-check.json"
say "timings (s): ${TIMINGS[*]}; total $(elapsed "$T_ALL")"
say "PASS: the emulated aarch64 consumer bid, won, was paid and recorded its result ($WORK/iot-check.json)"
