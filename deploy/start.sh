#!/usr/bin/env bash
# The container's entry point: nginx (deploy/nginx.conf) on $PORT in front of Gunicorn on a unix
# socket. nginx holds slow clients; Gunicorn's sync workers only ever see whole requests.
# Whichever of the two exits first takes the other down, so the container restarts as one.
set -euo pipefail
cd "$(dirname "$0")/.."

run_dir="${NGINX_RUN_DIR:-/tmp/cp-nginx}"
mkdir -p "$run_dir"
socket="$run_dir/gunicorn.sock"
rm -f "$socket"
sed -e "s|__PORT__|${PORT:-8000}|g" -e "s|__UPSTREAM__|unix:$socket|g" -e "s|__PREFIX__|$run_dir|g" \
    deploy/nginx.conf > "$run_dir/nginx.conf"

# nginx adds the peer to X-Forwarded-For: trust that one hop (or as many as the platform adds).
export PROXY_FIX_X_FOR="${PROXY_FIX_X_FOR:-1}"
gunicorn --config gunicorn.conf.py --bind "unix:$socket" flask_api:app &
gunicorn_pid=$!
nginx -e stderr -p "$run_dir" -c "$run_dir/nginx.conf" -g "daemon off;" &
nginx_pid=$!

# Both stop gracefully: nginx (QUIT) and Gunicorn (TERM) finish the requests they hold.
stop() { kill -QUIT "$nginx_pid" 2>/dev/null || true; kill -TERM "$gunicorn_pid" 2>/dev/null || true; }
stopping=0
trap 'stopping=1; stop' TERM INT
status=0
wait -n "$gunicorn_pid" "$nginx_pid" || status=$?
stop
wait || true
# Asked to stop: a clean exit. Otherwise one of the two died: say so with its status.
if [ "$stopping" = 1 ]; then exit 0; fi
exit "$status"
