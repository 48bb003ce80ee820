#!/usr/bin/env bash
# Fanout's one setup step, for a newcomer's machine and for CI alike (Debian 12 or newer).
# Idempotent and quick when already done:
#   1. system packages (apt-get update + install only when one is missing), as root or through sudo;
#   2. .venv from python3 >= 3.11, and `pip install -e '.[test]'` only when pyproject.toml changed.
# nginx is installed as a test peer only: it must not run as a system service.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

PACKAGES=(ffmpeg nginx libnginx-mod-rtmp libnginx-mod-stream libsrt1.5-openssl srt-tools nftables openssl
          iproute2 ca-certificates)
MIN_PYTHON=(3 11)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

python_ok() {  # $1: interpreter; true when it is >= MIN_PYTHON and can make a venv with pip
    "$1" -c "import sys, venv, ensurepip; sys.exit(sys.version_info < (${MIN_PYTHON[0]}, ${MIN_PYTHON[1]}))" \
        >/dev/null 2>&1
}

# --- 1. system packages ------------------------------------------------------------------------------
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: Fanout's setup supports Debian 12 or newer"

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
elif ! python_ok "$PYTHON" && [ "$(command -v "$PYTHON")" = /usr/bin/python3 ]; then
    # Debian splits venv/ensurepip out of python3.
    installed python3-venv || missing+=(python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The nginx package may start a system nginx on port 80 at install time; tests run their own.
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    say "stopping the system nginx service (only the tests' own nginx instances are used)"
    as_root service nginx stop >/dev/null 2>&1 || as_root nginx -s quit >/dev/null 2>&1 || true
fi
if [[ " ${missing[*]} " == *" nginx "* ]]; then
    if [ -d /run/systemd/system ]; then
        as_root systemctl disable --now nginx >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1; then
        as_root update-rc.d nginx disable >/dev/null 2>&1 || true
    fi
fi

for tool in ffmpeg ffprobe nginx openssl srt-live-transmit nft; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool is still missing after install"
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || die "nginx RTMP module missing (libnginx-mod-rtmp)"

# --- 2. Python environment -----------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "python3 not found"
if ! python_ok "$PYTHON"; then
    found=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo unknown)
    die "Fanout needs Python >= ${MIN_PYTHON[0]}.${MIN_PYTHON[1]} with the venv module; $PYTHON is $found" \
        "(set PYTHON=/path/to/python3.11+ or use Debian 12 or newer)"
fi

if [ -x .venv/bin/python ] && ! python_ok .venv/bin/python; then
    say "rebuilding .venv: its Python is older than ${MIN_PYTHON[0]}.${MIN_PYTHON[1]} or broken"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.fanout-pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || [ ! -x .venv/bin/pytest ]; then
    say "installing Python dependencies (pyproject.toml changed)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi

say "ready ($(.venv/bin/python --version 2>&1), $(ffmpeg -version 2>/dev/null | head -n1 | cut -d' ' -f1-3))"
