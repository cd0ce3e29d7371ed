#!/usr/bin/env bash
# System packages the tests use: Debian's Chromium for the report test, redis-server for the
# Redis online store tests. Installs only what is missing, only as root with apt; otherwise those
# tests skip with a reason.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" = "0" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian ${missing[*]} for the report and online store tests (once)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "${missing[*]} not found and cannot install here; the tests that need them will skip"
fi
