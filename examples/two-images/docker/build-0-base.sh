#!/bin/sh
# The base image of both services: this server's own Python 3, copied into an image, so the
# example builds with no registry and no network. With a registry you would not need this
# script: build-1-app.sh and build-2-frontend.sh would start `FROM python:3.12-slim`.
set -eu
base=middock-example/python
python=$(command -v python3)
version=$("$python" -c 'import sys; print(sys.version.split()[0])')
revision=2 # 2: the standard library only, not the packages installed on this server
if [ "$(docker image inspect --format '{{index .Config.Labels "python.version"}}/{{index .Config.Labels "base.revision"}}' "$base" 2>/dev/null)" = "$version/$revision" ]; then
    echo "reusing $base (Python $version)"
    exit 0
fi
echo "building $base from this server's Python $version"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/root"
binary=$(readlink -f "$python")
stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
dynload=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("DESTSHARED"))')

# The interpreter, its standard library (without the packages installed on this server: their
# .pth files would slow every start of python3, a healthcheck's included), and every shared
# library they load.
copy() { mkdir -p "$root$(dirname "$2")" && cp -RH "$1" "$root$2"; }
mkdir -p "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
copy "$binary" /usr/bin/python3
copy "$stdlib" "$stdlib"
rm -rf "$root$stdlib/site-packages" "$root$stdlib/dist-packages"
ldd "$binary" "$dynload"/*.so 2>/dev/null |
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\// && $i !~ /:$/) print $i }' | sort -u |
    while read -r lib; do copy "$lib" "$lib"; done
printf 'root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY root/ /
ENV PATH=/usr/bin LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
LABEL python.version=$version base.revision=$revision
CMD ["python3"]
DOCKERFILE
docker build -q -t "$base" "$ctx"
