#!/usr/bin/env bash
# Sets everything up, then starts the server with the embedded defaults under gunicorn.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
bind="${AVATAR_BIND:-127.0.0.1:8000}"
echo "Avatar meeting server on http://${bind}/"
exec .venv/bin/gunicorn -c gunicorn.conf.py 'run:create_app()'
