#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (Playwright drives it with executable_path; no browser download).
# Called by .ci/run and, when chromium is missing, by the browser tests themselves (as root, where apt-get exists).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing: install Debian's chromium package (as root: apt-get install chromium)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
command -v chromium
