#!/usr/bin/env bash
# Start the demand-response web console (consumer console + utility dashboard).
#
#   ./run_flask.sh                 # gunicorn on http://127.0.0.1:5000, settings from .env
#   FLASK_RUN_PORT=8080 ./run_flask.sh
#   FLASK_RUN_HOST=0.0.0.0 ./run_flask.sh   # other machines may reach it: see docs/web.md
#   ./run_flask.sh --dev           # Flask's development server instead (or FLASK_DEV=1)
#
# The production server is gunicorn with deploy/gunicorn.conf.py (WEB_WORKERS, WEB_THREADS,
# LOG_FORMAT=json …: docs/production.md); other arguments go to gunicorn (or to `flask run`
# with --dev). Bootstraps the virtualenv (make bootstrap) on first use. The development server
# runs without the reloader, so the in-process consumer daemon exists exactly once.
set -euo pipefail
cd "$(dirname "$0")"
DEV=${FLASK_DEV:-0}
if [ "${1:-}" = "--dev" ]; then DEV=1; shift; fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import flask, flask_wtf, gunicorn, demand_response" 2>/dev/null; then
  echo "==> bootstrapping (make bootstrap)"
  make bootstrap
fi
export PATH="$PWD/node_modules/.bin:$PWD/.venv/bin:$PATH"
HOST=${FLASK_RUN_HOST:-127.0.0.1}
PORT=${FLASK_RUN_PORT:-5000}
if [ "$DEV" = 1 ] || [ "$DEV" = true ]; then
  exec .venv/bin/python -m flask --app flaskapp run --host "$HOST" --port "$PORT" --no-reload --no-debugger "$@"
fi
case "$HOST" in *:*) BIND="[$HOST]:$PORT" ;; *) BIND="$HOST:$PORT" ;; esac
echo "==> gunicorn on http://$BIND (./run_flask.sh --dev for Flask's development server)"
exec .venv/bin/python -m gunicorn -c deploy/gunicorn.conf.py --bind "$BIND" "flaskapp.wsgi:build()" "$@"
