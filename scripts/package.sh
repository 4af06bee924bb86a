#!/usr/bin/env bash
# Builds the Debian package target/debian/mboxfs_<version>_<arch>.deb with plain dpkg-deb:
#   /usr/bin/mboxfs                            the release binary, stripped
#   /usr/share/man/man1/mboxfs*.1.gz           man pages, from the clap definitions
#   /usr/share/{bash-completion,zsh,fish}/...  shell completions, from the same
#   /lib/systemd/system/mboxfs-preview*.service  the preview: the mount, and Dovecot on 1043
#   /etc/default/mboxfs                        the mount's options (a conffile)
#   /etc/mboxfs/dovecot-preview.conf           `mboxfs dovecot-config` (a conffile)
#   /usr/share/mboxfs/dovecot-readonly.acl     the preview's read-only ACL
#   /usr/share/doc/mboxfs/                     README.md, copyright, examples/ (other configs)
# The man pages, completions and configurations are written by the built binary itself
# (`mboxfs generate-docs`, `mboxfs dovecot-config`), so they always match what it accepts.
# Install it with `apt-get install ./target/debian/mboxfs_*.deb` (or dpkg -i; it needs fuse3).
# Needs cargo, binutils (strip, readelf, objdump) and dpkg-deb.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/cargo-env.sh
. scripts/cargo-env.sh
for tool in strip readelf objdump dpkg-deb gzip; do
    command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing (apt-get install binutils dpkg)" >&2; exit 1; }
done

cargo build --release --locked --quiet --bin mboxfs
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
out=target/debian
stage=$out/stage
rm -rf "$stage" "$out/generated"
mkdir -p "$stage/DEBIAN" "$out"
# Reproducible: every file dated by the last commit.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

install -D -m 0755 target/release/mboxfs "$stage/usr/bin/mboxfs"
strip --strip-all "$stage/usr/bin/mboxfs"
bin=$stage/usr/bin/mboxfs

"$bin" -q generate-docs "$out/generated"
mkdir -p "$stage/usr/share/man/man1"
for page in "$out"/generated/man/*.1; do
    gzip -9n <"$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
done
install -D -m 0644 "$out/generated/completions/mboxfs.bash" "$stage/usr/share/bash-completion/completions/mboxfs"
install -D -m 0644 "$out/generated/completions/_mboxfs" "$stage/usr/share/zsh/vendor-completions/_mboxfs"
install -D -m 0644 "$out/generated/completions/mboxfs.fish" "$stage/usr/share/fish/vendor_completions.d/mboxfs.fish"

install -D -m 0644 -t "$stage/lib/systemd/system" packaging/systemd/*.service
install -D -m 0644 packaging/debian/default "$stage/etc/default/mboxfs"
mkdir -p "$stage/etc/mboxfs" "$stage/usr/share/mboxfs" "$stage/usr/share/doc/mboxfs/examples"
"$bin" -q dovecot-config --print-acl >"$stage/usr/share/mboxfs/dovecot-readonly.acl"
"$bin" -q dovecot-config >"$stage/etc/mboxfs/dovecot-preview.conf"
ex=$stage/usr/share/doc/mboxfs/examples
"$bin" -q dovecot-config --virtual --owner 0:0 >"$ex/dovecot-preview-virtual.conf"
"$bin" -q dovecot-config --writable >"$ex/dovecot-preview-writable.conf"
"$bin" -q dovecot-config --dest /data/mail2 >"$ex/dovecot-production.conf"
"$bin" -q dovecot-config --dest /data/mail2 --virtual --owner 0:0 >"$ex/dovecot-production-virtual.conf"
# The virtual examples name uid 0 only because vmail need not exist where the package is built.
sed -i 's/--owner 0:0/--owner vmail/' "$ex"/dovecot-*-virtual.conf
install -m 0644 README.md "$stage/usr/share/doc/mboxfs/README.md"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: mboxfs"
    echo
    echo "Files: *"
    echo "License: MIT"
    sed 's/^$/./; s/^/ /' LICENSE
} >"$stage/usr/share/doc/mboxfs/copyright"
chmod 0644 "$stage"/usr/share/doc/mboxfs/copyright "$ex"/* "$stage"/etc/mboxfs/* "$stage"/usr/share/mboxfs/*

# Dependencies: the shared libraries the binary links, at the newest glibc symbol it uses.
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -n 1)
depends="libc6 (>= $glibc)"
if readelf -d "$bin" | grep -q 'libgcc_s.so.1'; then depends="$depends, libgcc-s1"; fi
depends="$depends, fuse3"
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: mboxfs
Version: $version
Architecture: $arch
Maintainer: mboxfs maintainers <root@localhost>
Installed-Size: $installed_size
Depends: $depends
Suggests: dovecot-imapd, man-db
Section: mail
Priority: optional
Description: migrate a UW-IMAP mail host (mbox files) to Dovecot Maildir++
 mboxfs reads the mbox spool and folders as UW-IMAP served them and turns them
 into Maildir++ trees with the same UIDs, UIDVALIDITY, flags and keywords:
 "mboxfs plan" checks the sources and the destination, "mboxfs mount" shows the
 trees live through FUSE for a preview Dovecot on port 1043 (systemd units
 included), "mboxfs materialize" writes the final copy (only what changed, and
 never over users' work), and "mboxfs verify" proves it exact.
CONTROL
printf '/etc/default/mboxfs\n/etc/mboxfs/dovecot-preview.conf\n' >"$stage/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -exec touch -h -d "@$epoch" {} +

deb=$out/mboxfs_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
rm -rf "$stage" "$out/generated"
echo "$deb"
