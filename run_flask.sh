#!/usr/bin/env bash
# Start the demand-response web console (consumer console + utility dashboard).
#
#   ./run_flask.sh                 # http://127.0.0.1:5000, settings from .env
#   FLASK_RUN_PORT=8080 ./run_flask.sh
#   FLASK_RUN_HOST=0.0.0.0 ./run_flask.sh   # other machines may reach it: see docs/web.md
#
# Bootstraps the virtualenv (make bootstrap) on first use. Runs without the reloader, so
# the in-process consumer daemon exists exactly once.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import flask, flask_wtf, demand_response" 2>/dev/null; then
  echo "==> bootstrapping (make bootstrap)"
  make bootstrap
fi
export PATH="$PWD/node_modules/.bin:$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m flask --app flaskapp run \
  --host "${FLASK_RUN_HOST:-127.0.0.1}" --port "${FLASK_RUN_PORT:-5000}" --no-reload --no-debugger "$@"
