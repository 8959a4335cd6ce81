#!/usr/bin/env bash
# Install Debian 13's docker-compose package (Compose v2: a static binary that needs only
# libc6 >= 2.34) on Debian 12, which has no Compose v2 package of its own. Used by
# `install.sh --compose-from-debian-13` and by the test setup.
#
# It asks the Debian mirror this server's apt already uses (its sources, and apt's own proxy
# settings), so a server behind a local mirror or a proxy works as its apt does.
set -euo pipefail

# The mirror of the Debian archive in apt's sources: one-line `.list` files and deb822
# `.sources` files, the entry of the release itself (not -security, -updates or -backports).
debian_mirror() {
    local etc=${APT_ETC:-/etc/apt}
    local files=("$etc/sources.list" "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources)
    local existing=()
    for file in "${files[@]}"; do [ -f "$file" ] && existing+=("$file"); done
    [ ${#existing[@]} -gt 0 ] || return 1
    awk '
        /^[[:space:]]*#/ { next }
        # one-line format: deb [options] URI SUITE COMPONENTS...
        $1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) !~ /-/) { print $i; exit }
            next
        }
        # deb822: a stanza of URIs:, Suites:, Types:
        /^URIs:/ { uris = $2 }
        /^Suites:/ { for (j = 2; j <= NF; j++) if ($j !~ /-/) suite = $j }
        /^Types:/ { types = $0 }
        /^[[:space:]]*$/ {
            if (uris != "" && suite != "" && types ~ /deb( |$)/) { print uris; exit }
            uris = ""; suite = ""; types = ""
        }
        END { if (uris != "" && suite != "" && types ~ /deb( |$)/) print uris }
    ' "${existing[@]}" | head -n 1
}

mirror=$(debian_mirror || true)
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
if [ "${1:-}" = --print-mirror ]; then
    echo "$mirror"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt, into this folder
echo "deb $mirror trixie main" >"$tmp/debian-13.list"
apt_opts=(-o "Dir::Etc::SourceList=$tmp/debian-13.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp")
mkdir -p "$tmp/lists/partial"
apt-get "${apt_opts[@]}" update -qq
(cd "$tmp" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tmp"/docker-compose_*.deb >/dev/null
