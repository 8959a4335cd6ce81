#!/usr/bin/env bash
# Install Debian 13's docker-compose package (Compose v2: a static binary that needs only
# libc6 >= 2.34) on Debian 12, which has no Compose v2 package of its own. Used by
# `install.sh --compose-from-debian-13` and by the test setup.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt, into this folder
echo "deb http://deb.debian.org/debian trixie main" >"$tmp/debian-13.list"
apt_opts=(-o "Dir::Etc::SourceList=$tmp/debian-13.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp")
mkdir -p "$tmp/lists/partial"
apt-get "${apt_opts[@]}" update -qq
(cd "$tmp" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tmp"/docker-compose_*.deb >/dev/null
