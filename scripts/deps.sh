#!/usr/bin/env bash
# deps.sh - install the Debian packages skipq needs that are missing.
#   scripts/deps.sh [extra-package ...]
# Runs apt-get only when something is missing (as root, or through sudo).
set -euo pipefail
want=(build-essential cmake pkg-config libpq-dev libpqtypes-dev libjson-c-dev
      libyaml-dev libmicrohttpd-dev postgresql pgbouncer postgresql-client faketime "$@")
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps.sh: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The postgresql package would start a system cluster on port 5432; skipq
# never uses it (tests and the demo start their own), so keep it from starting.
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
