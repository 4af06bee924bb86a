#!/usr/bin/env bash
# Installs, from Debian's packages and only when missing, what mboxfs's preview and tests need:
# fuse3 (fusermount3), dovecot-imapd (dovecot, doveadm), python3, util-linux (setpriv), and UW's
# c-client library with a C compiler (libc-client2007e-dev, gcc, libc6-dev, make), which the tests
# build ../shared/tools/uw/uwdump.c against: UW-IMAP's own reading is their reference.
# The packages' own services are kept from starting during the install: a second IMAP server on
# port 143 is not what a migration host wants (the preview runs its own Dovecot on 1043).
set -euo pipefail

need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
{ command -v dovecot && command -v doveadm; } >/dev/null 2>&1 || need+=(dovecot-imapd)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
[ -e /usr/include/c-client/c-client.h ] || need+=(libc-client2007e-dev)
command -v cc >/dev/null 2>&1 || need+=(gcc)
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
command -v make >/dev/null 2>&1 || need+=(make)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "install-deps.sh: ${need[*]} missing; run as root to install them" >&2
    exit 1
fi
echo "install-deps.sh: installing ${need[*]}"
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
trap '[ -z "$made_policy" ] || rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
