#!/bin/sh
# Builds tollgate_VERSION_ARCH.deb from a built binary:
#   packaging/build-deb.sh BINARY VERSION OUTDIR
# `cargo xtask deb` runs it on the release binary; the package test on the
# binary under test. The same files as `cargo xtask install`: the binary,
# the systemd unit, the example config (a conffile, never overwritten),
# and maintainer scripts that create the tollgate group and directories.
set -eu
bin=$1 version=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

install -D -m 0755 "$bin" "$stage/usr/bin/tollgate"
install -D -m 0644 "$here/tollgate.service" "$stage/lib/systemd/system/tollgate.service"
install -D -m 0640 "$here/../etc/tollgate.toml" "$stage/etc/tollgate/tollgate.toml"
# Documentation generated from the binary's own clap definitions: manual
# pages (section 8) and shell completions.
man="$stage/usr/share/man/man8"
"$bin" man --out-dir "$man"
gzip -9n "$man"/*.8
install -d -m 0755 "$stage/usr/share/bash-completion/completions" \
    "$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d"
"$bin" completions bash > "$stage/usr/share/bash-completion/completions/tollgate"
"$bin" completions zsh > "$stage/usr/share/zsh/vendor-completions/_tollgate"
"$bin" completions fish > "$stage/usr/share/fish/vendor_completions.d/tollgate.fish"
# Monitoring: alert rules (with their promtool tests) and the dashboard.
for f in tollgate-alerts.yml tollgate-alerts.test.yml grafana-dashboard.json; do
    install -D -m 0644 "$here/../monitoring/$f" "$stage/usr/share/tollgate/monitoring/$f"
done
install -D -m 0644 "$here/../README.md" "$stage/usr/share/doc/tollgate/README.md"
install -d -m 0755 "$stage/DEBIAN"
for s in postinst prerm postrm; do
    install -m 0755 "$here/debian/$s" "$stage/DEBIAN/$s"
done
install -m 0644 "$here/debian/conffiles" "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    "$here/debian/control.in" > "$stage/DEBIAN/control"
mkdir -p "$out"
deb="$out/tollgate_${version}_${arch}.deb"
# DEB_COMPRESSION: dpkg-deb's -Z (default xz; the tests use none).
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"
