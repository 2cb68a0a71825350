#!/bin/sh
# Install the utility's side on a server (Debian / Ubuntu, x86-64 or aarch64): the package
# with the web and ops extras in a venv, the web app, a system user, and two systemd units,
# dr-utility (the settling daemon) and dr-web (the dashboard under gunicorn). Run as root,
# from a checkout of the project:
#
#   sudo sh deploy/install-utility.sh [options]
#
# Options:
#   --prefix DIR        install folder (default /opt/demand-response)
#   --user NAME         system user the services run as (default dr)
#   --metrics-port N    the daemon's /metrics and /healthz port in .env (default 9108; 0: none)
#   --no-web            only the daemon (no dr-web unit)
#   --start             also start the services now (only once .env and the account are ready)
#   --root DIR          stage everything under DIR (DIR/etc, DIR/opt/...): no user, no chown,
#                       no systemctl; for packaging and for the tests
#
# It is idempotent: run it again from a newer checkout to upgrade. It never overwrites .env,
# the secret files or database/. Docs: docs/production.md.
set -eu

PREFIX=/opt/demand-response
DR_USER=dr
METRICS_PORT=9108
WEB=1
START=0
ROOT=

say() { echo "install-utility: $*"; }
die() { echo "install-utility: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --user) DR_USER=$2; shift 2 ;;
    --metrics-port) METRICS_PORT=$2; shift 2 ;;
    --no-web) WEB=0; shift ;;
    --start) START=1; shift ;;
    --root) ROOT=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$SRC/pyproject.toml" ] && [ -d "$SRC/flaskapp" ] || die "run it from a checkout of the project (deploy/install-utility.sh)"
case "$METRICS_PORT" in ''|*[!0-9]*) die "--metrics-port must be a number (0: none)" ;; esac
if [ -z "$ROOT" ]; then
  [ "$(id -u)" = 0 ] || die "run as root (sudo): it creates a user and installs systemd units (or stage with --root DIR)"
fi
DEST=$ROOT$PREFIX
ETC=$ROOT/etc

# 1. Python 3.10+ with venv and pip (Debian splits them out of python3).
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  [ -z "$ROOT" ] && command -v apt-get >/dev/null 2>&1 || die "python3 with the venv module is needed; install it with your package manager"
  say "installing python3 and python3-venv (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates >/dev/null
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "python3 is $(python3 -V 2>&1); 3.10 or newer is needed"

# 2. A system user whose home is the install folder; keystores in PREFIX/keystores.
if [ -z "$ROOT" ] && ! id "$DR_USER" >/dev/null 2>&1; then
  say "creating system user $DR_USER"
  useradd --system --user-group --home-dir "$PREFIX" --no-create-home --shell /usr/sbin/nologin "$DR_USER"
fi
mkdir -p "$DEST/database" "$DEST/keystores"
chmod 700 "$DEST/keystores"
[ -n "$ROOT" ] || chown "$DR_USER:$DR_USER" "$DEST/database" "$DEST/keystores"

# 3. The code: the package, the web app and these deploy files, swapped in whole.
say "copying the project to $PREFIX/app"
rm -rf "$DEST/app.new"
mkdir -p "$DEST/app.new"
(cd "$SRC" && tar -cf - --exclude='__pycache__' --exclude='*.pyc' \
    demand_response flaskapp deploy pyproject.toml requirements.lock README.md .env.template) | tar -C "$DEST/app.new" -xf -
[ ! -d "$DEST/app" ] || mv "$DEST/app" "$DEST/app.old"
mv "$DEST/app.new" "$DEST/app"
rm -rf "$DEST/app.old"

# 4. The venv: the package with the web (flask, gunicorn) and ops (prometheus-client) extras,
# at the versions the project tested (requirements.lock as constraints).
[ -x "$DEST/.venv/bin/python" ] || { say "creating $PREFIX/.venv"; python3 -m venv "$DEST/.venv"; }
say "installing demand-response[web,ops] (a minute or two the first time)"
"$DEST/.venv/bin/pip" install --disable-pip-version-check -q --upgrade -c "$DEST/app/requirements.lock" "$DEST/app[web,ops]"
"$DEST/.venv/bin/dr" --help >/dev/null
[ -n "$ROOT" ] || ln -sf "$PREFIX/.venv/bin/dr" /usr/local/bin/dr

# 5. Settings: .env (readable by the services) and the secret files (root only; systemd reads them).
if [ ! -f "$DEST/.env" ]; then
  cat > "$DEST/.env" <<ENV
# Utility settings (docs/production.md, every key: app/.env.template). Passwords go in
# /etc/dr/utility.secret and /etc/dr/web.secret, not here.
RPC_URL=
CHAIN_ID=
CONTRACT_ADDRESS=
UTILITY_ACCOUNT=utility
KEYSTORE_DIR=$PREFIX/keystores
RESULTS_FILE=database/results.json
STATE_DIR=database
# Blocks to stay behind the head (2-3 on a PoA chain, more on L1).
CONFIRMATIONS=2
DR_ROLE=utility
LOG_FORMAT=text
METRICS_PORT=$( [ "$METRICS_PORT" = 0 ] || echo "$METRICS_PORT")
METRICS_HOST=127.0.0.1
ENV
  chmod 640 "$DEST/.env"
  [ -n "$ROOT" ] || chown "root:$DR_USER" "$DEST/.env"
  say "wrote $PREFIX/.env: fill in RPC_URL, CHAIN_ID and CONTRACT_ADDRESS"
fi
mkdir -p "$ETC/dr"
if [ ! -f "$ETC/dr/utility.secret" ]; then
  (umask 077; printf 'UTILITY_ACCOUNT_PASS=\n' > "$ETC/dr/utility.secret")
  say "wrote /etc/dr/utility.secret (mode 600): put the keystore password there"
fi
if [ "$WEB" = 1 ] && [ ! -f "$ETC/dr/web.secret" ]; then
  KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  (umask 077; printf 'FLASK_SECRET_KEY=%s\n' "$KEY" > "$ETC/dr/web.secret")
  say "wrote /etc/dr/web.secret (mode 600): a random FLASK_SECRET_KEY"
fi

# 6. The units, with this install's folder and user.
mkdir -p "$ETC/systemd/system"
UNITS=dr-utility
[ "$WEB" = 0 ] || UNITS="dr-utility dr-web"
for unit in $UNITS; do
  sed -e "s#/opt/demand-response#$PREFIX#g" -e "s#^User=dr\$#User=$DR_USER#" -e "s#^Group=dr\$#Group=$DR_USER#" \
      "$DEST/app/deploy/$unit.service" > "$ETC/systemd/system/$unit.service.tmp"
  mv "$ETC/systemd/system/$unit.service.tmp" "$ETC/systemd/system/$unit.service"
  say "installed /etc/systemd/system/$unit.service"
done

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  for unit in $UNITS; do systemctl enable "$unit.service" >/dev/null 2>&1; done
  say "enabled $UNITS (start at boot)"
  if [ "$START" = 1 ]; then
    for unit in $UNITS; do systemctl restart "$unit.service"; done
    say "started: journalctl -u dr-utility -u dr-web -f"
  fi
else
  say "systemd is not running here (or --root): the units are installed but not enabled"
fi

cat <<NEXT
install-utility: done. Next:
  1. the utility account: cd $PREFIX && runuser -u $DR_USER -- .venv/bin/dr accounts new utility
     (or import a key: ... dr accounts import utility), fund it, and put its password in
     /etc/dr/utility.secret as UTILITY_ACCOUNT_PASS=...
  2. fill RPC_URL, CHAIN_ID and CONTRACT_ADDRESS in $PREFIX/.env (or deploy: dr deploy)
  3. systemctl enable --now $UNITS && journalctl -u dr-utility -f
  4. put nginx with TLS in front of 127.0.0.1:5000 (docs/production.md) and check
     curl -s 127.0.0.1:$METRICS_PORT/healthz
NEXT
