#!/usr/bin/env bash
# System packages the tests use: Debian's Chromium for the report test.
# Installs only when missing, only as root with apt; otherwise those tests skip with a reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian chromium for the HTML report test (once)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "chromium not found and cannot install it here; the report rendering test will skip"
fi
