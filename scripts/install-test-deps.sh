#!/usr/bin/env bash
# Installs the programs the end-to-end tests drive, from Debian's packages:
#   nginx    /usr/sbin/nginx     nginx in front of the gateway, and beside it with auth_request
#   haproxy  /usr/sbin/haproxy   a load balancer sending PROXY v2 / X-Forwarded-For
#   caddy    /usr/bin/caddy      Caddy 2.6 with forward_auth (the README's Caddy recipe)
#   chromium /usr/bin/chromium   the browser (driven by playwright-core, which never downloads one)
#   fonts-liberation             legible text in Chromium screenshots
#   openssl  /usr/bin/openssl    throw-away TLS certificates (TLS listener, recipes, healthcheck)
#   slapd    /usr/sbin/slapd     OpenLDAP for the directory tests (ldap-utils: slapadd, ldapsearch)
#   redis-sentinel               /usr/bin/redis-sentinel: Sentinel failover tests (primary, replica, 3 sentinels)
# Does nothing (quickly) when all of them are already there. Needs root, or sudo, to install.
set -euo pipefail

PACKAGES=(nginx haproxy caddy chromium fonts-liberation openssl slapd ldap-utils redis-server redis-sentinel)
BINARIES=(/usr/sbin/nginx /usr/sbin/haproxy /usr/bin/caddy /usr/bin/chromium /usr/bin/openssl /usr/sbin/slapd /usr/sbin/slapadd /usr/bin/ldapsearch /usr/bin/redis-server /usr/bin/redis-sentinel)

missing=()
for bin in "${BINARIES[@]}"; do
  [[ -x "$bin" ]] || missing+=("$bin")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-test-deps: nginx, haproxy, caddy, chromium, openssl, slapd and redis-sentinel are present"
  exit 0
fi
echo "install-test-deps: missing ${missing[*]}; installing ${PACKAGES[*]}"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "install-test-deps: not root and no sudo; install as root: apt-get install ${PACKAGES[*]}" >&2
    exit 1
  fi
fi

# Installing nginx, haproxy or caddy must not start a system service (on port 80, or anywhere): the tests
# run their own instances. A policy-rc.d that answers 101 forbids it; ours is removed afterwards.
POLICY=/usr/sbin/policy-rc.d
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
"${SUDO[@]}" "${APT[@]}" update
"${SUDO[@]}" "${APT[@]}" install -y --no-install-recommends "${PACKAGES[@]}"

for bin in "${BINARIES[@]}"; do
  if [[ ! -x "$bin" ]]; then
    echo "install-test-deps: $bin is still missing after installing ${PACKAGES[*]}" >&2
    exit 1
  fi
done
echo "install-test-deps: done"
