#!/bin/sh
# Install the consumer daemon on a board (aarch64 or x86-64, Debian / Raspberry Pi OS / Ubuntu):
# the light package (no compiler, no node, no brownie, no extras) in a venv, a system user,
# and the systemd unit. Run as root, from anywhere:
#
#   sudo sh install-consumer.sh demand_response-0.1.0-py3-none-any.whl [options]
#
# Options:
#   --constraints FILE   pip constraints (the project's requirements.lock: the tested versions)
#   --prefix DIR         install folder (default /opt/demand-response)
#   --user NAME          system user the daemon runs as (default dr)
#   --unit FILE          the unit to install (default: dr-consumer.service beside this script)
#   --poll-interval S    seconds between polls in the unit (default 5)
#   --start              also start the service now (only once .env and bids.json are ready)
#
# It is idempotent: run it again with a newer wheel to upgrade. It never overwrites .env,
# the secret file or database/. Docs: docs/iot.md.
set -eu

PREFIX=/opt/demand-response
DR_USER=dr
UNIT=
CONSTRAINTS=
POLL=5
START=0
WHEEL=

say() { echo "install-consumer: $*"; }
die() { echo "install-consumer: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --constraints) CONSTRAINTS=$2; shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --user) DR_USER=$2; shift 2 ;;
    --unit) UNIT=$2; shift 2 ;;
    --poll-interval) POLL=$2; shift 2 ;;
    --start) START=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) WHEEL=$1; shift ;;
  esac
done

[ -n "$WHEEL" ] || die "give the wheel: install-consumer.sh demand_response-*.whl (build it with: pip wheel --no-deps -w dist .)"
[ -f "$WHEEL" ] || die "$WHEEL: no such file"
[ "$(id -u)" = 0 ] || die "run as root (sudo): it creates a user and installs a systemd unit"
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "$UNIT" ] || UNIT=$HERE/dr-consumer.service
[ -f "$UNIT" ] || die "$UNIT: no such unit file (pass --unit)"
[ -z "$CONSTRAINTS" ] || [ -f "$CONSTRAINTS" ] || die "$CONSTRAINTS: no such constraints file"

# 1. Python 3.10+ with venv and pip (Debian splits them out of python3).
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "python3 with the venv module is needed; install it with your package manager"
  say "installing python3 and python3-venv (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates >/dev/null
  apt-get clean  # the downloaded .debs: ~90 MB an SD card does not need
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "python3 is $(python3 -V 2>&1); 3.10 or newer is needed"

# 2. A system user whose home is the install folder; keystores in PREFIX/keystores.
if ! id "$DR_USER" >/dev/null 2>&1; then
  say "creating system user $DR_USER"
  useradd --system --user-group --home-dir "$PREFIX" --no-create-home --shell /usr/sbin/nologin "$DR_USER"
fi
mkdir -p "$PREFIX/database" "$PREFIX/keystores"
chown "$DR_USER:$DR_USER" "$PREFIX/database" "$PREFIX/keystores"
chmod 700 "$PREFIX/keystores"

# 3. The venv and the light package: web3 and python-dotenv with their dependencies, nothing else.
[ -x "$PREFIX/.venv/bin/python" ] || { say "creating $PREFIX/.venv"; python3 -m venv "$PREFIX/.venv"; }
say "installing $(basename "$WHEEL") (no extras)"
if [ -n "$CONSTRAINTS" ]; then
  "$PREFIX/.venv/bin/pip" install --disable-pip-version-check -q --upgrade -c "$CONSTRAINTS" "$WHEEL"
else
  "$PREFIX/.venv/bin/pip" install --disable-pip-version-check -q --upgrade "$WHEEL"
fi
"$PREFIX/.venv/bin/dr" --help >/dev/null
ln -sf "$PREFIX/.venv/bin/dr" /usr/local/bin/dr

# 4. Settings: .env (readable by the daemon) and the password file (root only; systemd reads it).
if [ ! -f "$PREFIX/.env" ]; then
  cat > "$PREFIX/.env" <<EOF
# Consumer settings (docs/iot.md). The password goes in /etc/dr/consumer.secret, not here.
RPC_URL=
CONTRACT_ADDRESS=
CONSUMER_ACCOUNT=home
KEYSTORE_DIR=$PREFIX/keystores
BIDS_FILE=database/bids.json
RESULTS_FILE=database/results.json
STATE_DIR=database
# Blocks to stay behind the head (2-3 on a PoA chain, more on L1).
CONFIRMATIONS=0
EOF
  chown "root:$DR_USER" "$PREFIX/.env"
  chmod 640 "$PREFIX/.env"
  say "wrote $PREFIX/.env: fill in RPC_URL and CONTRACT_ADDRESS"
fi
mkdir -p /etc/dr
if [ ! -f /etc/dr/consumer.secret ]; then
  (umask 077; printf 'CONSUMER_ACCOUNT_PASS=\n' > /etc/dr/consumer.secret)
  say "wrote /etc/dr/consumer.secret (mode 600): put the keystore password there"
fi

# 5. The unit, with this install's folder, user and poll interval.
sed -e "s#/opt/demand-response#$PREFIX#g" -e "s#^User=dr\$#User=$DR_USER#" -e "s#^Group=dr\$#Group=$DR_USER#" \
    -e "s#--poll-interval [0-9.]*#--poll-interval $POLL#" "$UNIT" > /etc/systemd/system/dr-consumer.service.tmp
mv /etc/systemd/system/dr-consumer.service.tmp /etc/systemd/system/dr-consumer.service
say "installed /etc/systemd/system/dr-consumer.service (poll every $POLL s, logs in the journal)"

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable dr-consumer.service >/dev/null 2>&1
  say "enabled dr-consumer.service (starts at boot)"
  if [ "$START" = 1 ]; then systemctl restart dr-consumer.service; say "started: journalctl -u dr-consumer -f"; fi
else
  say "systemd is not running here (a chroot or container): the unit is installed but not enabled"
fi

cat <<EOF
install-consumer: done. Next:
  1. create the account:  cd $PREFIX && runuser -u $DR_USER -- .venv/bin/dr accounts new home
     (or import a key: ... dr accounts import home), fund its address, and put its password
     in /etc/dr/consumer.secret as CONSUMER_ACCOUNT_PASS=...
  2. fill RPC_URL and CONTRACT_ADDRESS in $PREFIX/.env
  3. write $PREFIX/database/bids.json (docs/bids-format.md) and chown it to $DR_USER
  4. systemctl enable --now dr-consumer && journalctl -u dr-consumer -f
EOF
