#!/usr/bin/env bash
# Runs every test of mboxfs: formatting, lints, unit tests, and the integration tests that mount
# for real (FUSE), run a real Dovecot against the mount and against materialize's output, and
# compare with UW-IMAP's own library (c-client, through ../shared/tools/uw/uwdump.c, built by the
# tests): the real files of ../shared/corpus/real and thousands of generated ones. Installs what
# the tests need first.
# Run as root (mounting for other users, creating test users and running Dovecot need it).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [ "$(id -u)" != 0 ]; then
    echo "test.sh: run as root" >&2
    exit 1
fi
scripts/install-deps.sh
# The package test (tests/package.rs) also needs man-db (man -w) and binutils (strip, readelf).
pkg_need=()
command -v man >/dev/null 2>&1 || pkg_need+=(man-db)
command -v readelf >/dev/null 2>&1 || pkg_need+=(binutils)
if [ ${#pkg_need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkg_need[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkg_need[@]}" >/dev/null; }
fi
# shellcheck source=scripts/cargo-env.sh
. scripts/cargo-env.sh
[ -e /dev/fuse ] || modprobe fuse

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
