#!/usr/bin/env bash
# Optional tools for `npm run bench` (Debian/Ubuntu): wrk, the load generator the bench prefers
# (without it the bench falls back to autocannon, a devDependency), and nginx, needed for the
# forward-auth point (skipped without it). `npm test` needs neither from here.
set -euo pipefail
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -eq 0 ]; then
  echo "bench/setup.sh: wrk and nginx are already installed"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${need[@]}"
