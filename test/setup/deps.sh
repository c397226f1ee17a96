#!/usr/bin/env bash
# Installs what the tests run against (Debian's redis-server, postgresql, openssl and chromium) when it is missing.
# Runs before `npm test`; says what it did. Set AUDIENCE_SYNC_NO_INSTALL=1 to only check.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The Google Ads API tests make a self-signed certificate for their loopback gRPC server.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The console's browser tests drive Debian's Chromium through playwright-core.
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ "${1:-}" = "--with-r" ]; then command -v Rscript >/dev/null 2>&1 || need+=(r-base-core); fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ -n "${AUDIENCE_SYNC_NO_INSTALL:-}" ]; then
  echo "tests need: ${need[*]} (apt-get install ${need[*]})" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "tests need ${need[*]}: run as root, or install them: apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
echo "installing ${need[*]} from Debian's packages for the tests..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
$sudo apt-get install -y -q --no-install-recommends "${need[@]}" >&2
echo "installed ${need[*]}" >&2
