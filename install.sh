#!/usr/bin/env bash
# middock's one-time server install. Safe to re-run: it upgrades middock in place and keeps
# apps, releases, config and keys.
#
#   sudo ./install.sh [--user NAME [--adopt-user]] [--key FILE]... [--compose-from-debian-13] [--no-edge] [--acme-email EMAIL]
#
# On Debian 12/13 and Ubuntu 22.04/24.04 it installs what is missing from the distribution's
# packages (git, python3-venv, Docker Engine, Compose v2, sshd, and the edge's HAProxy and
# Caddy), installs middock from this folder into its own virtualenv with `middock` on PATH,
# creates the deploy user (no password, every SSH key restricted to middock, the keys file root's)
# with a Docker daemon of its own in Docker's rootless mode (not the docker group: a deploy key is
# not root), authorizes the keys given and starts the edge.
set -euo pipefail
umask 022 # the deploy user runs what is installed here

python=/usr/bin/python3 # the distribution's, whatever else is first on PATH
user=deploy
prefix=/opt/middock
bin_dir=/usr/local/bin
compose_from_debian_13=0
adopt_user=0
edge=1
ACCOUNT_COMMENT="middock deploy user" # marks an account install.sh made (and so manages)
edge_settings=()
sshd_config_dir=/etc/ssh/sshd_config.d
keys=()
arguments=("$@")

usage() {
    cat <<'EOF'
usage: sudo ./install.sh [options]
  --user NAME                the deploy user, created if missing (default: deploy)
  --adopt-user               make an existing account that install.sh did not create the deploy
                             user: it gets a rootless Docker daemon of its own and leaves the
                             docker group, its home loses world access; its password is kept
  --key FILE                 authorize this SSH public key for the deploy user (repeatable)
  --compose-from-debian-13   on Debian 12, which has no Compose v2, install Debian 13's
                             docker-compose package (a static binary; needs only libc6)
  --no-edge                  do not install or start the edge (HAProxy and Caddy, which serve
                             apps that set MIDDOCK_WEB, with their domains and HTTPS)
  --acme-email EMAIL         the contact for the edge's ACME (Let's Encrypt) account
  --http-port N              the edge's HTTP port (default: 80)
  --https-port N             the edge's HTTPS port (default: 443)
  --prefix DIR               middock's virtualenv (default: /opt/middock)
  --bin-dir DIR              where the `middock` command is linked (default: /usr/local/bin)
  --sshd-config-dir DIR      where sshd's setting for the deploy user's keys file goes (default:
                             /etc/ssh/sshd_config.d; another folder: the machine's sshd is neither
                             checked nor reloaded, e.g. for an sshd of your own that includes it)
EOF
}

say() { printf -- '-----> %s\n' "$*"; }
detail() { printf '       %s\n' "$*"; }
die() {
    printf ' !     %s\n' "$*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
    --user | --key | --prefix | --bin-dir | --acme-email | --http-port | --https-port | --sshd-config-dir)
        [ $# -ge 2 ] || { usage >&2 && exit 2; }
        case "$1" in
        --user) user=$2 ;;
        --key) keys+=("$2") ;;
        --prefix) prefix=$2 ;;
        --bin-dir) bin_dir=$2 ;;
        --sshd-config-dir) sshd_config_dir=$2 ;;
        --acme-email | --http-port | --https-port) edge_settings+=("${1#--}=$2") ;;
        esac
        shift 2
        ;;
    --compose-from-debian-13) compose_from_debian_13=1 && shift ;;
    --adopt-user) adopt_user=1 && shift ;;
    --no-edge) edge=0 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || die "install.sh must run as root: sudo $0 ${arguments[*]}"
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -f "$source_dir/setup.py" ] && [ -d "$source_dir/middock_receiver" ] ||
    die "run install.sh from middock's source folder (setup.py and middock_receiver/ beside it)"
[[ "$user" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "invalid user name '$user'"
# An account install.sh did not create is not its to change (its password, shell, groups), unless
# the admin says so; root is never the deploy user.
if id -u "$user" >/dev/null 2>&1; then
    [ "$(id -u "$user")" != 0 ] || die "the deploy user cannot be root: give another --user"
    made_here=0
    [ "$(getent passwd "$user" | cut -d: -f5)" = "$ACCOUNT_COMMENT" ] && made_here=1
    [ "$made_here" = 1 ] || [ "$adopt_user" = 1 ] ||
        die "the account '$user' exists and install.sh did not create it, so it changes nothing of it: give another --user, or add --adopt-user to make it the deploy user (it leaves the docker group for a rootless Docker daemon of its own, its password is kept)"
fi
for key in "${keys[@]}"; do
    [ -r "$key" ] || die "cannot read the key file $key"
done

# --- 1. The distribution's packages -------------------------------------------------------

. /etc/os-release
case "${ID:-}:${VERSION_ID:-}" in
debian:12 | debian:13 | ubuntu:22.04 | ubuntu:24.04) ;;
*)
    command -v apt-get >/dev/null || die "middock installs on Debian 12/13 or Ubuntu 22.04/24.04, not ${PRETTY_NAME:-this system}"
    printf ' !     Warning: %s is not a tested system (Debian 12/13, Ubuntu 22.04/24.04); going on\n' "${PRETTY_NAME:-this}" >&2
    ;;
esac

apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        say "Updating the package lists"
        apt-get update -qq
        apt_updated=1
    fi
}

# Compose v2 as middock uses it: `docker compose`, or a standalone docker-compose of v2.
compose_v2() {
    local version
    for program in "docker compose" "docker-compose"; do
        version=$($program version --short 2>/dev/null) || continue
        [[ "${version#v}" =~ ^([2-9]|[1-9][0-9]+)\. ]] && return 0
    done
    return 1
}

# The first of these packages whose candidate version is Compose v2 (distributions name it differently).
compose_package() {
    local candidate
    for pkg in docker-compose-v2 docker-compose-plugin docker-compose; do
        candidate=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
        candidate=${candidate#*:}
        if [[ "$candidate" =~ ^2\. ]]; then
            echo "$pkg"
            return 0
        fi
    done
    return 1
}

missing=()
command -v git >/dev/null || missing+=(git)
dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed" || missing+=(python3-venv)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v docker >/dev/null || missing+=(docker.io)
# Docker's rootless mode: the deploy user's own daemon (docker.io ships dockerd-rootless.sh)
[ -x /usr/bin/rootlesskit ] || missing+=(rootlesskit)
[ -x /usr/bin/slirp4netns ] || missing+=(slirp4netns)
[ -x /usr/bin/newuidmap ] || missing+=(uidmap)
[ -x /usr/sbin/cron ] || missing+=(cron) # runs the apps' scheduled jobs (middock.cron)
[ -x /usr/sbin/logrotate ] || missing+=(logrotate) # rotates the audit log
if [ "$edge" = 1 ]; then
    [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    [ -x /usr/bin/caddy ] || missing+=(caddy)
fi
if [ ${#missing[@]} -gt 0 ] || ! compose_v2; then
    apt_update
fi
compose_deb=""
if ! compose_v2; then
    if pkg=$(compose_package); then
        missing+=("$pkg")
    elif [ "$compose_from_debian_13" = 1 ] && [ "${ID:-}" = debian ]; then
        compose_deb=debian-13
    else
        cat >&2 <<EOF
 !     ${PRETTY_NAME:-This system} has no Docker Compose v2 package, and middock needs it. Nothing was installed.
       Either re-run with --compose-from-debian-13 (Debian 12: installs Debian 13's docker-compose
       package, a static binary that needs only libc6):
           sudo $0 --compose-from-debian-13 ${arguments[*]}
       or install Docker's own packages (docker-ce, docker-compose-plugin) as described at
       https://docs.docker.com/engine/install/debian/ and re-run install.sh.
EOF
        exit 1
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    say "Installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -n "$compose_deb" ]; then
    say "Installing docker-compose (Compose v2) from Debian 13"
    bash "$source_dir/scripts/compose-from-debian-13.sh"
fi
compose_v2 || die "Docker Compose v2 is still not working after the install; see 'docker compose version'"
getent group docker >/dev/null || groupadd --system docker

if [ -d /run/systemd/system ]; then
    systemctl enable --now docker >/dev/null 2>&1 || true
    systemctl enable --now cron >/dev/null 2>&1 || true
fi
if ! docker info >/dev/null 2>&1; then
    printf ' !     Warning: the Docker daemon is not running; start it (systemctl start docker) before the first push\n' >&2
fi
detail "$(docker --version), $(docker compose version 2>/dev/null || docker-compose version)"

# --- 2. middock in its own virtualenv -------------------------------------------------------

# (Re)create it when it is missing, or was made by another Python (a distribution upgrade).
if [ "$(readlink -f "$prefix/bin/python3")" != "$(readlink -f "$python")" ] ||
    ! "$prefix/bin/python3" -m pip --version >/dev/null 2>&1; then
    say "Creating the virtualenv $prefix"
    "$python" -m venv --clear "$prefix"
fi
say "Installing middock from $source_dir into $prefix"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r "$source_dir/setup.py" "$source_dir/README.md" "$source_dir/middock_receiver" "$source_dir/hooks" "$build/"
[ -f "$source_dir/pyproject.toml" ] && cp "$source_dir/pyproject.toml" "$build/"
"$prefix/bin/python3" -m pip install --quiet --disable-pip-version-check --no-warn-script-location "$build" ||
    die "pip could not install middock into $prefix (is PyPI reachable?)"
mkdir -p "$bin_dir"
ln -sfn "$prefix/bin/middock" "$bin_dir/middock"
detail "$("$prefix/bin/python3" -c 'import middock_receiver as m; print("middock", m.__version__)'): $bin_dir/middock"

# --- 3. The deploy user ---------------------------------------------------------------------

made_here=1
if ! id -u "$user" >/dev/null 2>&1; then
    say "Creating the deploy user $user"
    useradd --create-home --shell /bin/sh --comment "$ACCOUNT_COMMENT" "$user"
    chmod 0750 "$(getent passwd "$user" | cut -d: -f6)"
elif [ "$(getent passwd "$user" | cut -d: -f5)" != "$ACCOUNT_COMMENT" ]; then
    made_here=0
    say "Adopting the account $user as the deploy user (--adopt-user): its password stays as it is"
fi
home=$(getent passwd "$user" | cut -d: -f6)
shell=$(getent passwd "$user" | cut -d: -f7)
case "$shell" in
"" | */nologin | */false) usermod --shell /bin/sh "$user" ;; # sshd runs the forced command with it
esac
[ -d "$home" ] || install -d -m 0750 -o "$user" -g "$(id -g "$user")" "$home"
[ "$made_here" = 1 ] || chmod o-rwx,g-w "$home" # the apps' state and secrets live there
# The user's containers run on a Docker daemon of its own, in Docker's rootless mode: a deploy
# key is then not root (in the docker group it would be). An install from before, whose apps run
# on the root daemon, keeps it until root moves them (middock refresh --rootless): never unasked.
if [[ " $(id -nG "$user") " == *" docker "* ]]; then
    if compgen -G "$home/*.git" >/dev/null; then
        say "Keeping $user on the root Docker daemon, where its apps run: its deploy keys stay root-equivalent"
        detail "(middock refresh --rootless --user $user moves them to a rootless daemon of its own)"
    else
        gpasswd -d "$user" docker >/dev/null
    fi
fi
# Its daemon's root is the user's subordinate ids (useradd gives a range; an adopted account may lack one).
if ! grep -q "^$user:" /etc/subuid 2>/dev/null || ! grep -q "^$user:" /etc/subgid 2>/dev/null; then
    first=$(awk -F: '$2 + $3 > end { end = $2 + $3 } END { print (end > 100000 ? end : 100000) }' /etc/subuid /etc/subgid 2>/dev/null || echo 100000)
    usermod --add-subuids "$first-$((first + 65535))" --add-subgids "$first-$((first + 65535))" "$user"
fi
# '*': no password can match, so no password login; unlike '!' it is not a locked account,
# which sshd (with UsePAM no) would refuse even for keys. An adopted account keeps its own.
[ "$made_here" = 0 ] || [ "$(getent shadow "$user" | cut -d: -f2)" = "*" ] || usermod -p '*' "$user"

# What every home of the machine shares lives in /run/middock, where only root creates (never in
# /tmp, where any account could take a name first): the network allocation lock, which only root
# and the deploy users (the group middock) may open, and each deploy user's own folder (the edge's
# sockets of a home whose path is too long for one). A tmpfiles line makes them again at every
# boot; the lines of the other deploy users (install.sh may run for several) are kept.
getent group middock >/dev/null || groupadd --system middock
[[ " $(id -nG "$user") " == *" middock "* ]] || usermod -aG middock "$user"
uid=$(id -u "$user")
gid=$(id -g "$user")
tmpfiles=/etc/tmpfiles.d/middock.conf
mkdir -p /etc/tmpfiles.d
{
    echo "# middock's folder for what every home of the machine shares (written by install.sh)"
    echo "d /run/middock 0755 root root -"
    echo "f /run/middock/networks.lock 0640 root middock -"
    {
        { grep -E '^d /run/middock/[0-9]+ ' "$tmpfiles" 2>/dev/null || true; } | while read -r _ path _ owner group _; do
            [ "$path" = "/run/middock/$uid" ] || ! getent passwd "$owner" >/dev/null || echo "d $path 0700 $owner $group -"
        done
        echo "d /run/middock/$uid 0700 $uid $gid -"
    } | sort -u
} >"$tmpfiles.new"
mv -f "$tmpfiles.new" "$tmpfiles"
if [ -d /run/systemd/system ] && command -v systemd-tmpfiles >/dev/null; then
    systemd-tmpfiles --create "$tmpfiles" || die "systemd-tmpfiles could not apply $tmpfiles (see above)"
else
    install -d -m 0755 -o root -g root /run/middock
    # Made 0600 first, so that no account opens it (and keeps it open) before it is the group's.
    [ -f /run/middock/networks.lock ] || (umask 077 && : >>/run/middock/networks.lock)
    chown root:middock /run/middock/networks.lock
    chmod 0640 /run/middock/networks.lock
    grep -E '^d /run/middock/[0-9]+ ' "$tmpfiles" | while read -r _ path mode owner group _; do
        install -d -m "$mode" -o "$owner" -g "$group" "$path"
    done
fi
# The deploy user's SSH keys are root's: sshd reads /etc/middock/authorized_keys/USER (root-owned,
# 0644, made by `refresh --root-keys` from the user's own file) instead of the user's
# ~/.ssh/authorized_keys, so no key, not even an app's build script running as the user, can add
# a key or change a key's role. In this order, so that no key is ever locked out: sshd's setting
# is written and checked (and taken back if sshd refuses it) before root's file exists, and sshd
# is reloaded only once the keys are in root's file.
sshd_setting="$sshd_config_dir/middock-$user.conf"
system_sshd=0
[ "$sshd_config_dir" != /etc/ssh/sshd_config.d ] || system_sshd=1
if [ "$system_sshd" = 1 ]; then
    grep -Eqs '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config ||
        die "/etc/ssh/sshd_config does not include /etc/ssh/sshd_config.d/*.conf: add that line at its top, then run install.sh again"
fi
mkdir -p "$sshd_config_dir"
{
    echo "# middock (install.sh): the SSH keys of $user are root's, written by \`middock keys:*\`"
    echo "Match User $user"
    echo "    AuthorizedKeysFile /etc/middock/authorized_keys/%u"
    echo "    # a key may forward only its dashboard's port (its permitopen), and only with ssh -L"
    echo "    AllowTcpForwarding local"
    echo "    AllowStreamLocalForwarding no"
    echo "    PermitTunnel no"
    echo "    X11Forwarding no"
} >"$sshd_setting.new"
mv -f "$sshd_setting.new" "$sshd_setting"
if [ "$system_sshd" = 1 ]; then
    sshd_out=$(/usr/sbin/sshd -t 2>&1) || { rm -f "$sshd_setting" && die "sshd refuses its configuration with $sshd_setting: $sshd_out"; }
fi
"$prefix/bin/middock" refresh --user "$user" --root-keys | sed 's/^-----> /       /'
# The audit log of who did what is root's too: /var/log/middock/audit-USER.log, root's file that
# the user's group may append to (its append-only attribute) and read (`middock audit`), so no
# key's build script can rewrite or remove a line. logrotate rotates it, keeping it append-only.
# Lines an earlier middock wrote in the user's home are carried over once (read as the user).
audit_log="/var/log/middock/audit-$user.log"
install -d -m 0755 -o root -g root /var/log/middock
if [ ! -f "$audit_log" ]; then
    (umask 077 && : >"$audit_log.new")
    for old in .3 .2 .1 ""; do
        runuser -u "$user" -- cat "$home/.middock/audit.log$old" 2>/dev/null >>"$audit_log.new" || true
    done
    chown "root:$gid" "$audit_log.new"
    chmod 0660 "$audit_log.new"
    mv -f "$audit_log.new" "$audit_log"
fi
chattr +a "$audit_log" 2>/dev/null ||
    printf ' !     Warning: %s cannot be append-only here (chattr +a): the deploy user could rewrite it\n' "$audit_log" >&2
cat >/etc/logrotate.d/middock <<'LOGROTATE'
# middock (install.sh): the deploy users' audit logs, root's and append-only (chattr +a)
/var/log/middock/audit-*.log {
    size 1M
    rotate 3
    missingok
    notifempty
    nocompress
    create
    prerotate
        chattr -a "$1" 2>/dev/null || true
    endscript
    postrotate
        chattr +a "$1" 2>/dev/null || true
        chmod g-w "$1.1"
    endscript
}
LOGROTATE
if [ "$system_sshd" = 1 ]; then
    if [ -d /run/systemd/system ] && systemctl is-active --quiet ssh 2>/dev/null; then
        systemctl reload ssh
    elif [ -d /run/systemd/system ] && systemctl is-active --quiet sshd 2>/dev/null; then
        systemctl reload sshd
    elif [ -s /run/sshd.pid ]; then
        kill -HUP "$(cat /run/sshd.pid)"
    fi
fi

# --- 4. The edge ------------------------------------------------------------------------------

if [ "$edge" = 1 ]; then
    if [ -d /run/systemd/system ]; then
        # The packages enable their own services on the default configuration (Caddy's would hold
        # port 80); middock runs the proxies in units of its own, with its configuration.
        for unit in caddy.service haproxy.service; do
            if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit"; then
                detail "disabling the package's own $unit (the edge runs middock-haproxy-* and middock-caddy-* units)"
                systemctl disable --now "$unit" >/dev/null 2>&1 || true
            fi
        done
    fi
    if [ ${#edge_settings[@]} -gt 0 ]; then
        "$prefix/bin/middock" edge:set --user "$user" "${edge_settings[@]}" >/dev/null
    fi
    say "Starting the edge"
    "$prefix/bin/middock" edge:start --user "$user" | sed 's/^-----> /       /'
fi
"$prefix/bin/middock" dashboard:install --user "$user" | sed 's/^-----> /       /'

# --- 5. Keys --------------------------------------------------------------------------------

for key in "${keys[@]}"; do
    # The key's name: its comment (alice@laptop), else the file's name without .pub.
    name=$(awk 'NF >= 3 {print $3; exit}' "$key" | tr -c 'A-Za-z0-9._@+\n-' '-' | cut -c1-64)
    [[ "$name" =~ ^[A-Za-z0-9] ]] || name=$(basename "$key" .pub | tr -c 'A-Za-z0-9._@+\n-' '-' | cut -c1-64)
    "$prefix/bin/middock" keys:add --user "$user" "$name" "$key"
done

# --- 6. Next steps --------------------------------------------------------------------------

host=$(hostname -f 2>/dev/null || hostname)
user_option=""
[ "$user" = deploy ] || user_option=" --user $user"
say "middock is installed. Next steps:"
authorized=$("$prefix/bin/middock" keys:list --user "$user" --json)
if [[ "$authorized" != *'"restricted": true'* ]]; then
    echo "       here, authorize your laptop's public key:"
    echo "           sudo middock keys:add$user_option YOURNAME /path/to/your_key.pub"
fi
cat <<EOF
       on your laptop, in your app's repository:
           ssh $user@$host apps:create myapp
           git remote add production $user@$host:myapp.git
           git push production main
EOF
