#!/usr/bin/env bash
# The cut-over's downtime on a host of the migration paper's size (116 users, 11.8 GB of mbox
# files), scaled down by --scale S (default 8: 116 users, 11.8/S GB): pre-copy while the old
# server runs, then a day's mail arrives (UW-IMAP-style: new mail appended to every inbox,
# messages read and expunged, so inboxes are rewritten), then the downtime proper: the final
# `materialize` (writes only what changed) and `verify`.
# The day's mail is NOT scaled (every one of the 116 users gets DAY messages, default 40), so
# the final pass's writes are full size; what scales with the archive is the scan (indexing
# every mbox, listing DEST), measured as a run with nothing to do. The full-size estimate is
#   final(full) = S x nothing-to-do + (final - nothing-to-do),   verify(full) = S x verify.
# --cold drops the page cache before the final pass and verify (the paper's 1 GB server could
# not cache 11.8 GB; this disturbs other work on the machine).
# Run as root: scripts/bench-downtime.sh [--scale S] [--day N] [--cold]. bench.sh calls it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${MBOXFS_SHARED:-$repo/../shared}
scale=8
day=40
cold=
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale=$2; shift 2 ;;
        --day) day=$2; shift 2 ;;
        --cold) cold=1; shift ;;
        *) echo "bench-downtime.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "bench-downtime.sh: run as root" >&2; exit 1; }
mboxfs=${MBOXFS_BIN:-$repo/target/release/mboxfs}
if [ -z "${MBOXFS_BIN:-}" ]; then
    # shellcheck source=scripts/cargo-env.sh
    . "$repo/scripts/cargo-env.sh"
    (cd "$repo" && cargo build --release --quiet --bin mboxfs)
fi

w=$(mktemp -d /var/tmp/mboxfs-downtime.XXXXXX)
trap 'rm -rf "$w"' EXIT
now() { date +%s.%N; }
since() { python3 -c "print('%.2f' % ($(now) - $1))"; }
drop_caches() { if [ -n "$cold" ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }

# 116 users x 6 mbox files (inbox + 5 folders); mkcorpus messages average about 38 KB.
per_folder=$(python3 -c "print(max(1, round(11.8e9 / $scale / (116 * 6 * 38e3))))")
python3 "$shared/tools/mkcorpus.py" "$w/host" --users 116 --folders 5 --messages "$per_folder" \
    --big-every 12 --seed 1116 >/dev/null
find "$w/host" -type f -exec touch -d '-2 days' {} +
src=(--inbox="$w/host/var/spool/mail/%u" --home="$w/host/home/%u" --userlist="$w/host/userlist"
    --folderlist="$w/host/folderlist" --timezone=UTC --owner nobody)
bytes=$(find "$w/host/var" "$w/host/home" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
msgs=$(wc -l <"$w/host/manifest.jsonl")
echo "host: 116 users, $(python3 -c "print('%.2f' % ($bytes / 1e9))") GB of mbox files, $msgs messages (scale 1/$scale of 11.8 GB)"

t=$(now)
"$mboxfs" -q materialize "$w/dest" "${src[@]}" >/dev/null
echo "pre-copy (old server still running, not downtime): $(since "$t") s"

# A day's mail: DAY new messages for each user, appended to the inbox as Postfix does; and
# UW-IMAP's rewrites of each inbox: a tenth of the messages marked read, two expunged.
python3 - "$w/host" "$day" <<'PY'
import os, random, sys, time
root, day = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
users = open(os.path.join(root, "userlist")).read().split()
new_bytes = changed = expunged = 0
for u in users:
    path = os.path.join(root, "var/spool/mail", u)
    data = open(path, "rb").read()
    parts = data.split(b"\n\nFrom ")
    head, msgs = parts[0], [b"From " + p for p in parts[1:]]
    keep = []
    for i, m in enumerate(msgs):
        if i > 0 and len(keep) < len(msgs) - 2 and i in (3, 5):
            expunged += 1
            continue
        if b"\nStatus: O\n" in m.split(b"\n\n", 1)[0] and rng.random() < 0.1:
            m = m.replace(b"\nStatus: O\n", b"\nStatus: RO\n", 1)
            changed += 1
        keep.append(m)
    out = b"\n\n".join([head] + keep)
    if not out.endswith(b"\n"):
        out += b"\n"
    t0 = int(time.time()) - 86400
    for k in range(day):
        t = t0 + k * 86400 // day
        body = b"".join(b"line %d of a message delivered today, with some words\n" % j
                        for j in range(rng.randint(20, 400)))
        msg = (b"\nFrom sender%d@example.org %s\n" % (k, time.asctime(time.gmtime(t)).encode())
               + b"From: sender%d@example.org\nTo: %s@example.org\nSubject: day mail %d\n"
               % (k, u.encode(), k) + b"Message-ID: <day-%s-%d@example.org>\n\n" % (u.encode(), k)
               + body)
        new_bytes += len(msg)
        out += msg
    with open(path, "wb") as f:
        f.write(out)
    old = time.time() - 120
    os.utime(path, (old, old))
print("a day's mail: %d new messages (%.1f MB), %d marked read, %d expunged (%d inboxes rewritten)"
      % (day * len(users), new_bytes / 1e6, changed, expunged, len(users)))
PY

drop_caches
t=$(now)
"$mboxfs" -q materialize "$w/dest" "${src[@]}" >"$w/final.txt"
t_final=$(since "$t")
echo "final materialize: $t_final s ($(cat "$w/final.txt"))"
drop_caches
t=$(now)
"$mboxfs" -q verify "$w/dest" "${src[@]}" >"$w/verify.txt" || { tail -n 5 "$w/verify.txt"; exit 1; }
t_verify=$(since "$t")
echo "verify: $t_verify s ($(tail -n 1 "$w/verify.txt"))"
drop_caches
t=$(now)
"$mboxfs" -q materialize "$w/dest" "${src[@]}" >/dev/null
t_noop=$(since "$t")
echo "the same final pass with nothing to do (the scan alone): $t_noop s"
python3 -c "
s, f, v, n = $scale, $t_final, $t_verify, $t_noop
full = s * n + max(0.0, f - n)
print('downtime at this scale: %.1f s (final materialize + verify)' % (f + v))
print('estimated at 11.8 GB: final materialize %.0f s + verify %.0f s = %.0f s (%.1f min)'
      % (full, s * v, full + s * v, (full + s * v) / 60))"
