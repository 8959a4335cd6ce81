#!/usr/bin/env bash
# Install and start everything the test suite needs on a fresh Debian 12 machine:
# Docker Engine, Compose v2, sshd, busybox (for test images), PostgreSQL, the edge's proxies
# (HAProxy, Caddy) and pebble, rootless Docker's parts, Chromium, git, ruff.
# Idempotent: what is already there is left alone.
set -euo pipefail

log() { printf '[test-setup] %s\n' "$*"; }

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install docker.io openssh-server openssh-client busybox-static git postgresql iproute2 ca-certificates
apt_install haproxy caddy pebble openssl # the edge's proxies, and Let's Encrypt's test server
apt_install debootstrap                    # the Debian base image of the django-postgres example's test
apt_install docker-registry                # the Swarm's registry (the Swarm tests run their own nodes)
apt_install python3-venv # install.sh's virtualenv, made with the distribution's /usr/bin/python3
apt_install cron         # runs the apps' scheduled jobs (the tests start it where it does not run)
apt_install logrotate    # rotates install.sh's audit logs
apt_install rootlesskit slirp4netns uidmap # the deploy user's rootless Docker daemon (install.sh's)
apt_install chromium     # the dashboard's tests drive Debian's Chromium, headless, with Playwright

# What udev does on a Debian server, and a container's /dev lacks: /dev/net/tun open to every
# account (rootless Docker's slirp4netns opens it as the deploy user).
[ ! -c /dev/net/tun ] || chmod 0666 /dev/net/tun

# Compose v2: Debian 12 has none; Debian 13's docker-compose (a static binary) installs cleanly.
if ! docker compose version >/dev/null 2>&1; then
    log "fetching docker-compose (Compose v2) from Debian 13"
    bash "$(dirname "$0")/compose-from-debian-13.sh" # the same way as install.sh --compose-from-debian-13
fi

# Docker Engine
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    mkdir -p /var/log
    nohup dockerd >/var/log/middock-test-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/middock-test-dockerd.log"; exit 1; }
fi

# Python dependencies and the linter
python3 -m pip install -q --disable-pip-version-check dulwich docker python-dotenv pytest pytest-xdist ruff
# the dashboard's web stack as setup.py pins it, and Playwright (its driver only: the browser is Debian's)
python3 -m pip install -q --disable-pip-version-check starlette==1.10.0 uvicorn==0.55.0 jinja2==3.1.6 \
    sse-starlette==3.7.1 playwright==1.65.3
log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version --short | sed 's/^/compose /')"
