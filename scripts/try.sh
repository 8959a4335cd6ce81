#!/usr/bin/env bash
# Try middock without a server: boot a throwaway Debian 12 server (systemd, sshd, its own Docker) in a local
# Docker container, install middock in it as the README says, push examples/hello from a client user inside
# it, and print where the page is served on this machine (127.0.0.1 only).
#
#   sudo scripts/try.sh [--port N]     # N: the port on 127.0.0.1 (default: the first free one from 8000)
#   sudo scripts/try.sh --down [--image]   # remove the server (and its image, about 400 MB)
#
# The server is the test suite's (tests/support/server_bed.py); its image is built once with debootstrap (a few
# minutes) and reused. Needs root, a running Docker Engine, debootstrap and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

command=(up)
while [ $# -gt 0 ]; do
    case "$1" in
    --down) command[0]=down && shift ;;
    --image) command+=(--image) && shift ;;
    --port)
        [ $# -ge 2 ] || { echo "usage: scripts/try.sh [--port N] | --down [--image]" >&2 && exit 2; }
        command+=(--port "$2") && shift 2
        ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' && exit 0 ;;
    *) echo "usage: scripts/try.sh [--port N] | --down [--image]" >&2 && exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo " !     try.sh needs root (debootstrap, the server's cgroups): sudo $0" >&2 && exit 1; }
missing=()
command -v docker >/dev/null || missing+=(docker.io)
[ "${command[0]}" = down ] || command -v debootstrap >/dev/null || missing+=(debootstrap) # builds the image
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    echo " !     try.sh needs ${missing[*]}: apt-get install ${missing[*]}" >&2
    exit 1
fi
docker info >/dev/null 2>&1 || { echo " !     try.sh needs a running Docker Engine (systemctl start docker)" >&2 && exit 1; }

exec env PYTHONPATH="tests${PYTHONPATH:+:$PYTHONPATH}" python3 -m support.server_bed "${command[@]}"
