#!/usr/bin/env bash
# Set up a development machine (Debian 12, Python 3.11) and run binrelay.
#
#   bash scripts/dev.sh install          install what is missing; nothing else
#   bash scripts/dev.sh demo [ARGS...]   install, then run `binrelay demo`
#   bash scripts/dev.sh test [ARGS...]   install, then run the whole test suite: ruff, mypy
#                                        and pytest (ARGS go to pytest, e.g. -k storage)
#
# Idempotent and quiet when everything is already there. Debian packages are
# installed with sudo when not root: dovecot-imapd and postgresql provide the
# server binaries only; binrelay's tests and demo start private instances on
# loopback, so system services started by the installation are stopped again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.binrelay-install-stamp"

say() { printf 'dev.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    sed -n '4,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $* (install sudo or run as root)"
    fi
}

# --- Python -------------------------------------------------------------------

python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in python3.11 python3 python3.12 python3.13; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

venv_ok() {
    [ -x "$VENV/bin/python" ] && python_ok "$VENV/bin/python"
}

# --- Debian packages ----------------------------------------------------------

have_postgres() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1
}

have_dovecot() {
    [ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1
}

missing_packages() {
    local python
    have_dovecot || echo dovecot-imapd
    command -v systemd-analyze >/dev/null 2>&1 || echo systemd   # for `systemd-analyze verify` of the unit
    have_postgres || echo postgresql
    if venv_ok; then
        return 0
    fi
    if ! python="$(find_python)"; then
        echo python3 python3-venv
    elif ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo python3-venv
    fi
}

# Keep apt from starting services (there may be no systemd, and we want none).
POLICY=/usr/sbin/policy-rc.d

block_service_starts() {
    if [ -e "$POLICY" ]; then
        return 1
    fi
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$POLICY" >/dev/null
    as_root chmod 755 "$POLICY"
}

stop_system_postgres() {
    # If the package started a system cluster anyway, stop it: we use private ones.
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    local version cluster _port status _rest
    while read -r version cluster _port status _rest; do
        if [ "$status" = online ]; then
            say "stopping the system PostgreSQL cluster $version/$cluster (binrelay uses private instances)"
            as_root pg_ctlcluster "$version" "$cluster" stop || true
        fi
    done < <(pg_lsclusters --no-header 2>/dev/null || true)
}

install_packages() {
    local packages
    packages="$(missing_packages | tr '\n' ' ')"
    packages="${packages% }"
    [ -n "$packages" ] || return 0
    command -v apt-get >/dev/null 2>&1 || die "missing: $packages (no apt-get; install them by hand)"
    say "installing Debian packages: $packages"
    local blocked=0
    if block_service_starts; then blocked=1; fi
    local status=0
    {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            # shellcheck disable=SC2086 # word splitting wanted: a package list
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends $packages >/dev/null
    } || status=$?
    if [ "$blocked" -eq 1 ]; then as_root rm -f "$POLICY"; fi
    [ "$status" -eq 0 ] || die "apt-get failed (exit $status)"
    stop_system_postgres
}

# --- virtualenv ---------------------------------------------------------------

quietly() {
    # Run a chatty command; show its output only when it fails.
    local log status=0
    log="$(mktemp)"
    "$@" >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        die "failed (exit $status): $*"
    fi
    rm -f "$log"
}

install_stamp() {
    # Reinstall when pyproject.toml changes.
    sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1
}

setup_venv() {
    local python
    if ! venv_ok; then
        python="$(find_python)" || die "no Python >= 3.11 found (try: apt-get install python3)"
        say "creating $VENV with $python"
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
        quietly "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$(install_stamp)" ] \
        || ! "$VENV/bin/python" -c 'import relay, storage' >/dev/null 2>&1; then
        say "installing binrelay and its test tools into $VENV"
        (cd "$ROOT" && quietly "$VENV/bin/python" -m pip install -q -e '.[test]')
        install_stamp >"$STAMP"
    fi
}

install_all() {
    install_packages
    setup_venv
}

# --- commands -----------------------------------------------------------------

run_checks() {
    # Lint, types and tests; every one runs, and any failure fails the whole.
    local failed=0
    say "ruff check"
    "$VENV/bin/python" -m ruff check . || failed=1
    say "mypy (packages, tests and benchmarks)"
    "$VENV/bin/python" -m mypy mail rules relay storage tests bench || failed=1
    say "pytest"
    "$VENV/bin/python" -m pytest "$@" || failed=1
    return "$failed"
}

main() {
    local cmd="${1:-}"
    [ $# -eq 0 ] || shift
    case "$cmd" in
        install)
            install_all
            ;;
        demo)
            install_all
            cd "$ROOT"
            exec "$VENV/bin/binrelay" demo "$@"
            ;;
        test)
            install_all
            cd "$ROOT"
            export BINRELAY_REQUIRE_POSTGRES=1 BINRELAY_REQUIRE_DOVECOT=1 BINRELAY_REQUIRE_SYSTEMD=1
            run_checks "$@"
            ;;
        -h | --help | help)
            usage
            ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
