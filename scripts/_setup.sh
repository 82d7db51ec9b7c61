# Shared set-up for scripts/demo and scripts/test (sourced, not run).
# On a fresh Debian / Raspberry Pi OS box with only Python >= 3.11 it installs what the project
# needs: system packages via apt-get when we are root (else it says what to install), a
# virtualenv in .venv, and the project with its dev and demo extras (the tests run the demo).
# Re-runs are quick: pip runs again only when pyproject.toml changed.

KAP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$KAP_ROOT/.venv"

say() { printf '%s\n' "kapmonitor setup: $*" >&2; }

find_python() {
  local c
  for c in python3.13 python3.12 python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 &&
       "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

APT_UPDATED=0
apt_install() {  # apt_install PKG... : install Debian packages if we can
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_mosquitto() {
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}

# need_system_packages REQUIRED(0/1) PKG:CHECK ... — CHECK is a command that succeeds when present
ensure_packages() {
  local required=$1; shift
  local missing=() item pkg check
  for item in "$@"; do
    pkg=${item%%:*}; check=${item#*:}
    eval "$check" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if apt_install "${missing[@]}"; then return 0; fi
  if [ "$required" -eq 1 ]; then
    say "missing system packages: ${missing[*]}"
    say "install them first, e.g.:  sudo apt-get install ${missing[*]}"
    exit 1
  fi
  say "optional system packages not installed: ${missing[*]} (sudo apt-get install ${missing[*]})"
}

ensure_venv() {
  local py
  if ! py=$(find_python); then
    say "Python >= 3.11 is required (found: $(python3 --version 2>&1 || echo none))"
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv in $VENV with $py"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      local ver; ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      apt_install "python${ver}-venv" || apt_install python3-venv || {
        say "cannot create a virtualenv: install python3-venv (sudo apt-get install python3-venv)"
        exit 1
      }
      "$py" -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.kapmonitor-installed" want
  want=$(cat "$KAP_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing kapmonitor and its dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$KAP_ROOT[dev,demo]"
    echo "$want" > "$stamp"
  fi
}
