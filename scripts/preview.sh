#!/usr/bin/env bash
# mboxfs preview: mount a UW-IMAP host's mbox files as Maildir++ (read-only, live) and serve
# them with Dovecot on 127.0.0.1:1043, so that IMAP clients can test the migration before
# anything is copied. Ctrl-C stops Dovecot, unmounts and cleans up. Run as root.
#
#   scripts/preview.sh          the sample host shipped in sample/: only its users log in
#                               (user000, user001, user002), with the password pw
#   scripts/preview.sh --real   this host's mail: /var/spool/mail/%u, /home/%u and the lists in
#                               /root/migrate; users log in with their own passwords (PAM)
#   Extra arguments are passed to `mboxfs mount` (e.g. --timezone Europe/Berlin).
#
# Dovecot's configuration is what `mboxfs dovecot-config` prints (the same command the README
# and the packaged systemd units use), written into the preview's run directory. mboxfs's own
# log goes to a file there, never into the listing.
#
# Environment: MBOXFS_PREVIEW_PORT (default 1043), MBOXFS_BIN (a built mboxfs to use),
# MBOXFS_PREVIEW_ONESHOT=1 (show, then stop: for tests), MBOXFS_PREVIEW_KEEP=DIR (with
# ONESHOT: leave Dovecot and the mount running, and write their pids and paths to DIR/env).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
port=${MBOXFS_PREVIEW_PORT:-1043}
mode=sample
if [ "${1:-}" = "--real" ]; then
    mode=real
    shift
fi

if [ "$(id -u)" != 0 ]; then
    echo "preview.sh: run as root (mounting for other users and starting Dovecot need it)" >&2
    exit 1
fi

# --- what the preview needs -------------------------------------------------------------------
"$repo/scripts/install-deps.sh"

bin=${MBOXFS_BIN:-}
if [ -z "$bin" ]; then
    # shellcheck source=scripts/cargo-env.sh
    . "$repo/scripts/cargo-env.sh"
    echo "preview.sh: building mboxfs (release)..."
    (cd "$repo" && cargo build --release --quiet --bin mboxfs)
    bin=$repo/target/release/mboxfs
fi

run=$(mktemp -d /run/mboxfs-preview.XXXXXX)
chmod 755 "$run"
mnt=$run/mnt
mkdir -p "$mnt" "$run/dovecot" "$run/home" "$run/volatile"
chmod 1777 "$run/volatile"

config_args=(--mountpoint "$mnt" --port "$port" --listen 127.0.0.1 --base-dir "$run/dovecot/run"
    --log-path "$run/dovecot/dovecot.log" --acl-file "$run/dovecot/readonly.acl"
    --homes "$run/home" --volatile-dir "$run/volatile")
if [ "$mode" = sample ]; then
    src=$repo/sample
    source_args=(--inbox "$src/var/spool/mail/%u" --home "$src/home/%u" --userlist "$src/userlist"
        --folderlist "$src/folderlist" --timezone UTC)
    # Virtual mail: one system user owns every preview tree; only the sample's users log in.
    id mboxfs-preview >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin mboxfs-preview
    chown mboxfs-preview: "$run/home"
    owner_args=(--owner mboxfs-preview)
    userlist=$src/userlist
    grep -v -e '^#' -e '^[[:space:]]*$' "$userlist" | sed 's/$/:{PLAIN}pw::::::/' >"$run/dovecot/passwd"
    # Read by Dovecot's auth process, which runs as the dovecot user.
    chgrp dovecot "$run/dovecot/passwd"
    chmod 640 "$run/dovecot/passwd"
    config_args+=(--virtual --owner mboxfs-preview --passwd-file "$run/dovecot/passwd")
    login_hint="log in as $(head -n 1 "$userlist") (or any user of sample/userlist) with password pw"
else
    source_args=()
    owner_args=()
    userlist=/root/migrate/userlist
    login_hint="log in with the users' own passwords"
fi

mboxfs_pid=
dovecot_pid=
keep=
cleanup() {
    trap - INT TERM EXIT
    [ -n "$keep" ] && return
    echo
    echo "preview.sh: stopping"
    [ -n "$dovecot_pid" ] && kill "$dovecot_pid" 2>/dev/null && wait "$dovecot_pid" 2>/dev/null
    [ -n "$mboxfs_pid" ] && kill "$mboxfs_pid" 2>/dev/null && wait "$mboxfs_pid" 2>/dev/null
    if mountpoint -q "$mnt" 2>/dev/null; then umount -l "$mnt"; fi
    rm -rf "$run"
}
trap cleanup INT TERM EXIT

# --- the mount (its log in a file: the listing below stays clean) ----------------------------
"$bin" mount "$mnt" --state-dir "$run/state" "${owner_args[@]}" "${source_args[@]}" "$@" \
    </dev/null >"$run/mboxfs.log" 2>&1 &
mboxfs_pid=$!
for _ in $(seq 100); do
    mountpoint -q "$mnt" && break
    kill -0 "$mboxfs_pid" 2>/dev/null || { echo "preview.sh: mboxfs mount failed:" >&2; cat "$run/mboxfs.log" >&2; exit 1; }
    sleep 0.1
done
mountpoint -q "$mnt" || { echo "preview.sh: $mnt did not appear:" >&2; cat "$run/mboxfs.log" >&2; exit 1; }

# --- Dovecot, configured by `mboxfs dovecot-config` ---------------------------------------------
conf=$run/dovecot/dovecot.conf
"$bin" dovecot-config --print-acl >"$run/dovecot/readonly.acl"
"$bin" dovecot-config "${config_args[@]}" >"$conf"
# Its log goes to log_path; what it says before that (a bad configuration) to a file too.
dovecot -F -c "$conf" </dev/null >"$run/dovecot/stderr" 2>&1 &
dovecot_pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$dovecot_pid" 2>/dev/null || { echo "preview.sh: Dovecot did not start:" >&2; cat "$run/dovecot/stderr" "$run/dovecot/dovecot.log" >&2; exit 1; }
    sleep 0.1
done

# --- what a client sees -----------------------------------------------------------------------
echo
echo "What IMAP clients see on 127.0.0.1:$port (UIDVALIDITY and UIDs are UW-IMAP's):"
while read -r user; do
    case "$user" in ''|'#'*) continue ;; esac
    echo "  $user"
    doveadm -c "$conf" mailbox status -u "$user" 'messages unseen uidvalidity uidnext' '*' 2>/dev/null |
        sed 's/^/    /' || echo "    (no mailboxes)"
done <"$userlist"
echo
echo "Mounted at $mnt; Dovecot on 127.0.0.1:$port, read-only ($login_hint)."
echo "Dovecot's config: $conf (written by mboxfs dovecot-config); logs: $run/mboxfs.log, $run/dovecot/dovecot.log"
if [ "${MBOXFS_PREVIEW_ONESHOT:-}" = 1 ]; then
    if [ -n "${MBOXFS_PREVIEW_KEEP:-}" ]; then
        keep=1
        printf 'run=%s\nmboxfs_pid=%s\ndovecot_pid=%s\nconf=%s\n' "$run" "$mboxfs_pid" "$dovecot_pid" "$conf" \
            >"$MBOXFS_PREVIEW_KEEP/env"
    fi
    exit 0
fi
echo "Press Ctrl-C to stop."
wait "$mboxfs_pid"
