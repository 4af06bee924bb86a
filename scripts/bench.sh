#!/usr/bin/env bash
# Measures mboxfs on a mkcorpus host of about 250 MB, side by side with the reference tools:
#   index    `mboxfs plan --jobs 1` (one core, page cache) against `cat` of the same files;
#            the index's memory per message
#   mount    `tar cf - MOUNT | cat` against the same on a real copy of the tree; imapcheck's
#            select+meta and bodies times through Dovecot on the mount (read-only and
#            --writable), on a real maildir, and on the mbox files themselves
#   write    `mboxfs materialize` against `cp -a` of its own output, Debian's `mb2md`, and
#            Dovecot's `doveadm backup` from mbox to maildir
#   live     noticing one appended message in a 100 MB and a 400 MB mbox, against reading the
#            whole file again
#   downtime the cut-over on a host of the migration paper's size scaled 1/8: the final
#            materialize after a day's mail, and verify (scripts/bench-downtime.sh)
#   big      a folder of 100,000 messages: `ls` and Dovecot's first SELECT through the mount,
#            against a real maildir; 1,500 folders served with 1,024 open files at most
# Run as root: scripts/bench.sh [--messages N] [--big N] (N per folder, default 150; messages
# in the big folder, default 100000). Needs ../shared
# (mkcorpus.py, imapcheck.py): set MBOXFS_SHARED if it is elsewhere.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${MBOXFS_SHARED:-$repo/../shared}
messages=150
big=100000
while [ $# -gt 0 ]; do
    case $1 in
    --messages) messages=$2; shift 2 ;;
    --big) big=$2; shift 2 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root" >&2; exit 1; }

"$repo/scripts/install-deps.sh"
for tool in mb2md hyperfine; do
    command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
done
# shellcheck source=scripts/cargo-env.sh
. "$repo/scripts/cargo-env.sh"
(cd "$repo" && cargo build --release --quiet --bins --examples)
mboxfs=$repo/target/release/mboxfs
helper=$repo/target/release/examples/bench

w=$(mktemp -d /var/tmp/mboxfs-bench.XXXXXX)
chmod 755 "$w"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    mountpoint -q "$w/mnt" 2>/dev/null && umount -l "$w/mnt"
    rm -rf "$w"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
hf() { hyperfine --style none --export-json "$w/hf.json" "$@" >/dev/null 2>&1; python3 -c "
import json; r = json.load(open('$w/hf.json'))['results']
print(' '.join('%.4f' % x['mean'] for x in r))"; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

say "machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), $(dovecot --version | cut -d' ' -f1) Dovecot"

say "host"
python3 "$shared/tools/mkcorpus.py" "$w/host" --users 6 --folders 6 --messages "$messages" --big-every 12 --seed 2026
find "$w/host" -type f -exec touch -d '-1 hour' {} +
host=$w/host
src=(--inbox="$host/var/spool/mail/%u" --home="$host/home/%u" --userlist="$host/userlist"
    --folderlist="$host/folderlist" --timezone=UTC)
bytes=$(find "$host/var" "$host/home" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
nmsg=$(wc -l <"$host/manifest.jsonl")
echo "$((bytes / 1048576)) MiB of mbox files, $nmsg messages, $(wc -l <"$host/userlist") users"

say "index (one core, from the page cache)"
find "$host/var" "$host/home" -type f -print0 | xargs -0 cat >/dev/null
read -r t_plan t_cat < <(hf -w 2 -r 10 -N "$mboxfs plan --jobs 1 ${src[*]}" \
    "sh -c 'find $host/var $host/home -type f -print0 | xargs -0 cat > /dev/null'")
echo "mboxfs plan --jobs 1: ${t_plan} s = $(python3 -c "print('%.2f' % ($bytes / $t_plan / 1e9))") GB/s"
echo "cat of the same files: ${t_cat} s = $(python3 -c "print('%.2f' % ($bytes / $t_cat / 1e9))") GB/s"
"$helper" index-memory "${src[@]}"

say "write: materialize and the reference tools (DEST on the same file system)"
# Every tool writes into a fresh directory (ext4 allocates slowly right after mass deletes, so
# nothing is deleted until the end), after a sync, and ends with its data on disk
# (materialize syncs itself).
timed() {
    sync
    local t0
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    python3 -c "print('%.4f' % ($(date +%s.%N) - $t0))"
}
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
m=()
c=()
for i in 1 2 3; do
    m+=("$(timed "$mboxfs" materialize "$w/dest$i" --owner nobody "${src[@]}")")
    c+=("$(timed sh -c "cp -a $w/dest$i $w/copy$i && sync -f $w/copy$i")")
done
t_mat=$(median3 "${m[@]}")
t_cp=$(median3 "${c[@]}")
mv "$w/dest1" "$w/dest"
mb2md_all() {
    mkdir -p "$w/mb2md"
    while read -r u; do
        mb2md -s "$host/var/spool/mail/$u" -d "$w/mb2md/$u" >/dev/null 2>&1
        mb2md -s "$host/home/$u" -R -d "$w/mb2md/$u" >/dev/null 2>&1
    done <"$host/userlist"
    sync -f "$w"
}
t_mb2md=$(timed mb2md_all)
# doveadm backup, as a non-root user, from a copy (Dovecot writes into the mbox files it reads).
cp -a "$host" "$w/dvsrc"
chown -R nobody:nogroup "$w/dvsrc"
mkdir -p "$w/dvdst" "$w/dvrun"
chown nobody:nogroup "$w/dvdst" "$w/dvrun"
cat >"$w/doveadm.conf" <<EOF
base_dir = $w/dvrun
log_path = $w/doveadm.log
ssl = no
mail_location = maildir:$w/dvdst/%u
namespace inbox {
  inbox = yes
  separator = /
  prefix =
}
EOF
backup_all() {
    while read -r u; do
        setpriv --reuid=nobody --regid=nogroup --clear-groups env USER="$u" HOME="$w/dvsrc/home/$u" TZ=UTC \
            doveadm -c "$w/doveadm.conf" backup -R "mbox:$w/dvsrc/home/$u:INBOX=$w/dvsrc/var/spool/mail/$u" || true
    done <"$host/userlist"
    sync -f "$w"
}
t_dsync=$(timed backup_all)
count() { find "$1" -path '*/cur/*' -o -path '*/new/*' | wc -l; }
echo "mboxfs materialize:  $t_mat s (median of ${m[*]})"
echo "cp -a of its output: $t_cp s (median of ${c[*]}); materialize / cp = $(ratio "$t_mat" "$t_cp") (goal <= 1.3)"
echo "mb2md:               $t_mb2md s; mb2md / materialize = $(ratio "$t_mb2md" "$t_mat") (goal >= 3)"
echo "doveadm backup:      $t_dsync s; doveadm / materialize = $(ratio "$t_dsync" "$t_mat") (goal >= 15)"
echo "messages written: mboxfs $(count "$w/dest"), mb2md $(count "$w/mb2md"), doveadm $(count "$w/dvdst")"
"$mboxfs" verify "$w/dest" "${src[@]}" | tail -n 1

say "mount"
mkdir -p "$w/mnt" "$w/home"
chown nobody:nogroup "$w/home"
"$mboxfs" mount "$w/mnt" --state-dir "$w/state" --owner nobody "${src[@]}" >/dev/null 2>"$w/mount.log" &
pids+=($!)
for _ in $(seq 100); do mountpoint -q "$w/mnt" && break; sleep 0.1; done
t0=$(date +%s.%N)
tar -C "$w/mnt" -cf - . | cat >/dev/null
t_tar_cold=$(python3 -c "print('%.4f' % ($(date +%s.%N) - $t0))")
read -r t_tar_mnt t_tar_real < <(hf -w 1 -r 5 "sh -c 'tar -C $w/mnt -cf - . | cat > /dev/null'" \
    "sh -c 'tar -C $w/dest -cf - . | cat > /dev/null'")
echo "tar of the mount, first read: $t_tar_cold s"
echo "tar of the mount: $t_tar_mnt s; of the real tree: $t_tar_real s (ratio $(ratio "$t_tar_mnt" "$t_tar_real"))"

dovecot_on() { # name mail_location port
    local d=$w/dv-$1
    mkdir -p "$d"
    cat >"$d/dovecot.conf" <<EOF
protocols = imap
listen = 127.0.0.1
base_dir = $d/run
instance_name = mboxfs-bench-$1
log_path = $d/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = $2
passdb {
  driver = static
  args = password=pw
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$w/home/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $3
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
    dovecot -F -c "$d/dovecot.conf" &
    pids+=($!)
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && break; sleep 0.1; done
}
check() { # port -> "select+meta bodies passed failed"
    python3 "$shared/tools/imapcheck.py" check --bodies --port "$1" --users "$host/userlist" \
        --manifest "$host/manifest.jsonl" 2>&1 | python3 -c "
import re, sys
t = sys.stdin.read()
sm = re.search(r'select\+meta ([0-9.]+)s', t).group(1); b = re.search(r'bodies ([0-9.]+)s', t).group(1)
p, f = re.search(r'(\d+) passed, (\d+) failed', t).groups()
print(sm, b, p, f)"
}
mkdir -p "$w/wmnt"
"$mboxfs" mount "$w/wmnt" --writable --state-dir "$w/wstate" --owner nobody "${src[@]}" >/dev/null 2>"$w/wmount.log" &
pids+=($!)
for _ in $(seq 100); do mountpoint -q "$w/wmnt" && break; sleep 0.1; done
cp -a "$host" "$w/mboxsrc"
chown -R nobody:nogroup "$w/mboxsrc"
dovecot_on mount "maildir:$w/mnt/%u" 11931
dovecot_on writable "maildir:$w/wmnt/%u" 11936
dovecot_on maildir "maildir:$w/dest/%u" 11932
dovecot_on mbox "mbox:$w/mboxsrc/home/%u:INBOX=$w/mboxsrc/var/spool/mail/%u" 11933
say "Dovecot + imapcheck --bodies (first run builds Dovecot's indexes; second is warm)"
printf '%-28s %12s %10s %8s\n' "" "select+meta" "bodies" "result"
declare -A sm b
for run in 1 2; do
    for s in mount:11931 writable:11936 maildir:11932 mbox:11933; do
        name=${s%%:*}
        read -r sm_ b_ p f < <(check "${s##*:}")
        sm[$name$run]=$sm_
        b[$name$run]=$b_
        printf '%-28s %11ss %9ss %s\n' "run $run, Dovecot on $name" "$sm_" "$b_" "$p passed, $f failed"
    done
done
for run in 1 2; do
    echo "run $run: mount / maildir = $(ratio "${sm[mount$run]}" "${sm[maildir$run]}") (select+meta), $(ratio "${b[mount$run]}" "${b[maildir$run]}") (bodies); goal <= 1.25"
    echo "run $run: writable mount / maildir = $(ratio "${sm[writable$run]}" "${sm[maildir$run]}") (select+meta), $(ratio "${b[writable$run]}" "${b[maildir$run]}") (bodies); goal <= 1.25"
    echo "run $run: mount / mbox    = $(ratio "${sm[mount$run]}" "${sm[mbox$run]}") (select+meta), $(ratio "${b[mount$run]}" "${b[mbox$run]}") (bodies)"
done

say "a folder of $big messages: ls and Dovecot's first SELECT, through the mount and on a real maildir"
# Written here rather than by mkcorpus: its dates run past 2106 at this size, which Dovecot's
# index cannot hold (on a real maildir as on the mount).
mkdir -p "$w/big/var/spool/mail" "$w/big/home/big"
echo big >"$w/big/userlist"
: >"$w/big/folderlist"
python3 - "$w/big/var/spool/mail/big" "$big" <<'PY'
import random, sys, time
path, n = sys.argv[1], int(sys.argv[2])
r = random.Random(5)
t0 = time.mktime((2001, 1, 1, 0, 0, 0, 0, 0, 0))
with open(path, "w") as f:
    for k in range(1, n + 1):
        t = time.gmtime(t0 + k * 2400)
        f.write("From sender%d@example.org %s\n" % (k % 97, time.strftime("%a %b %e %H:%M:%S %Y", t)))
        if k == 1:
            f.write("X-IMAPbase: 1100000000 %010d\n" % n)
        f.write("Subject: message %d\nMessage-ID: <m%d@example.org>\nStatus: %s\nX-UID: %d\n\n"
                % (k, k, r.choice(["RO", "O", "", "RO"]), k))
        f.write(("line %d of a message body that is not short\n" % k) * r.randint(10, 120))
        f.write("\n")
PY
touch -d '-1 hour' "$w/big/var/spool/mail/big"
bsrc=(--inbox="$w/big/var/spool/mail/%u" --home="$w/big/home/%u" --userlist="$w/big/userlist"
    --folderlist="$w/big/folderlist" --timezone=UTC)
"$mboxfs" materialize "$w/bigdest" --owner nobody "${bsrc[@]}" >/dev/null 2>&1
find "$w/big" "$w/bigdest" -type f -print0 | xargs -0 cat >/dev/null
echo "$(du -sm "$w/big/var" | cut -f1) MiB mbox, $(find "$w/bigdest/big" -path '*/cur/*' -o -path '*/new/*' | wc -l) messages"
mkdir -p "$w/bigmnt"
"$mboxfs" mount "$w/bigmnt" --state-dir "$w/bigstate" --owner nobody "${bsrc[@]}" >/dev/null 2>"$w/bigmount.log" &
pids+=($!)
for _ in $(seq 100); do mountpoint -q "$w/bigmnt" && break; sleep 0.1; done
sync
echo 2 >/proc/sys/vm/drop_caches
t_ls_mnt=$(timed ls "$w/bigmnt/big/cur" "$w/bigmnt/big/new")
t_ls_real=$(timed ls "$w/bigdest/big/cur" "$w/bigdest/big/new")
echo "ls, first: mount $t_ls_mnt s (indexing the mbox included), real $t_ls_real s (ratio $(ratio "$t_ls_mnt" "$t_ls_real"))"
read -r t_ls_mnt t_ls_real < <(hf -w 1 -r 5 "ls $w/bigmnt/big/cur $w/bigmnt/big/new" \
    "ls $w/bigdest/big/cur $w/bigdest/big/new")
echo "ls, again: mount $t_ls_mnt s, real $t_ls_real s (ratio $(ratio "$t_ls_mnt" "$t_ls_real"); goal <= 2)"
dovecot_on bigmount "maildir:$w/bigmnt/%u" 11934
dovecot_on bigmaildir "maildir:$w/bigdest/%u" 11935
meta() { # port -> "seconds messages" of SELECT and FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)
    python3 - "$1" <<'PY'
import imaplib, sys, time
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("big", "pw")
t = time.time()
typ, data = m.select("INBOX", readonly=True)
typ, rows = m.fetch("1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
print("%.3f %d" % (time.time() - t, len(rows)))
m.logout()
PY
}
for run in 1 2; do
    read -r bm n1 < <(meta 11934)
    read -r br n2 < <(meta 11935)
    echo "run $run: select+meta through the mount $bm s ($n1 messages), on the maildir $br s ($n2 messages): ratio $(ratio "$bm" "$br") (goal <= 1.25)"
done
grep -E "Error|Warning" "$w/dv-bigmount/dovecot.log" | head -n 3 || true

say "1500 folders with 1024 open files at most"
mkdir -p "$w/many/var/spool/mail" "$w/many/home/u" "$w/manymnt"
echo u >"$w/many/userlist"
: >"$w/many/folderlist"
for k in $(seq 1500); do
    printf 'From a@b Mon Jan  5 10:00:00 2004\nSubject: folder %s\nStatus: RO\n\nbody %s\n\n' "$k" "$k" >"$w/many/home/u/f$k"
    echo "u/f$k" >>"$w/many/folderlist"
done
cp "$w/many/home/u/f1" "$w/many/var/spool/mail/u"
find "$w/many" -type f -exec touch -d '-1 hour' {} +
prlimit --nofile=1024:1024 -- "$mboxfs" mount "$w/manymnt" --state-dir "$w/manystate" --trust-owners \
    --inbox="$w/many/var/spool/mail/%u" --home="$w/many/home/%u" --userlist="$w/many/userlist" \
    --folderlist="$w/many/folderlist" >/dev/null 2>"$w/manymount.log" &
pids+=($!)
for _ in $(seq 100); do mountpoint -q "$w/manymnt" && break; sleep 0.1; done
t_many=$(timed sh -c "cat $w/manymnt/u/.f*/cur/* >/dev/null")
served=$(cat "$w/manymnt/u"/.f*/cur/* | grep -c '^body ')
echo "every message of 1500 folders read in $t_many s: $served of 1500 served; $(ls /proc/$!/fd | wc -l) files open"

say "live: noticing one appended message"
for n in 2500 10000; do
    python3 "$shared/tools/mkcorpus.py" "$w/live$n" --users 1 --folders 0 --messages "$n" --big-every 12 --seed 7 >/dev/null
    "$helper" append-cost "$w/live$n/var/spool/mail/user000" 20
done

# ---- downtime (issue 13): the cut-over on a host of the paper's size, scaled -----------------
say "downtime: final pass after a day's mail, 116 users, 11.8 GB scaled 1/8 (bench-downtime.sh)"
MBOXFS_BIN=$mboxfs MBOXFS_SHARED=$shared "$repo/scripts/bench-downtime.sh" --scale 8
# ---- end of downtime ---------------------------------------------------------------------------
