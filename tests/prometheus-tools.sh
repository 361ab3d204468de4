#!/bin/bash
# tests/prometheus-tools.sh DIR
#
# Puts Debian's promtool and prometheus-node-exporter (static binaries, this
# release's packages) under DIR/root/usr/bin for the tests, without
# installing anything: `apt-get download` into DIR/debs, then `dpkg-deb -x`
# (no maintainer script runs, no service starts, nothing is written under
# /etc). Idempotent.
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/loud.sh"
DIR=${1:?usage: prometheus-tools.sh DIR}
mkdir -p "$DIR/debs" "$DIR/root"
DIR=$(cd "$DIR" && pwd)
log() { printf 'prometheus-tools: %s\n' "$*" >&2; }
have() {
    "$DIR/root/usr/bin/promtool" --version >/dev/null 2>&1 &&
        "$DIR/root/usr/bin/prometheus-node-exporter" --version >/dev/null 2>&1
}
if have; then
    exit 0
fi
cd "$DIR/debs"
log "downloading prometheus and prometheus-node-exporter"
# As root, apt's sandbox user cannot write here: download without it.
apt-get download -o APT::Sandbox::User=root prometheus prometheus-node-exporter >/dev/null
for deb in prometheus_*.deb prometheus-node-exporter_*.deb; do
    dpkg-deb -x "$deb" "$DIR/root"
done
have || { log "promtool or node_exporter does not run"; exit 1; }
log "$("$DIR/root/usr/bin/promtool" --version 2>&1 | head -1)"
log "$("$DIR/root/usr/bin/prometheus-node-exporter" --version 2>&1 | head -1)"
