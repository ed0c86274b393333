#!/usr/bin/env bash
# Build the Debian package of torii from this tree with dpkg-deb (no debian/ directory needed).
# Usage: scripts/package.sh [BUILD_DIR [OUT_DIR]]
#   BUILD_DIR: an existing build whose torii binary is packaged (default: build-pkg, configured
#              and built here in release mode with -Werror).
#   OUT_DIR:   where torii_<version>_<arch>.deb is written (default: BUILD_DIR).
# Contents: /usr/sbin/torii, the systemd unit, /etc/torii/torii.json (conffile, no routes,
# loopback listeners), torii(8) and torii.json(5), the docs. The service runs with
# DynamicUser=yes, so no system user is created. Maintainer scripts honour DPKG_ROOT (no
# systemctl when installing into another root, e.g. dpkg --root ... --force-script-chrootless).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
build=${1:-build-pkg}
out=${2:-$build}

if [ ! -x "$build/torii" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTORII_WERROR=ON >/dev/null
  cmake --build "$build" -j2 --target torii
fi
version=$(sed -n 's/^project(torii VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
arch=$(dpkg --print-architecture)
work=$(mktemp -d "${TMPDIR:-/tmp}/torii-pkg.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage="$work/root"

DESTDIR="$stage" cmake --install "$build" --prefix /usr --strip >/dev/null
gzip -9n "$stage/usr/share/man/man8/torii.8" "$stage/usr/share/man/man5/torii.json.5"
install -m 0644 LICENSE "$stage/usr/share/doc/torii/copyright"

# Shared-library dependencies of the binary, as dpkg-shlibdeps computes them.
mkdir -p "$work/shlibs/debian"
printf 'Source: torii\n\nPackage: torii\nArchitecture: any\n' > "$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e "$stage/usr/sbin/torii" 2>/dev/null \
          | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
size=$(du -sk "$stage" | cut -f1)

mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<EOF
Package: torii
Version: $version
Architecture: $arch
Maintainer: torii developers <torii@localhost>
Installed-Size: $size
Depends: $depends
Section: net
Priority: optional
Homepage: file:///usr/share/doc/torii/README.md
Description: TLS-terminating reverse proxy with an embedded certificate store
 torii terminates TLS for many host names from an embedded LMDB certificate store,
 proxies HTTP/1.1 to backends and manages certificates through an Otoroshi-compatible
 REST admin API (/api/certificates), with a built-in PKI and automatic renewal.
EOF
echo /etc/torii/torii.json > "$stage/DEBIAN/conffiles"
install -m 0755 "$src/scripts/debian/postinst" "$src/scripts/debian/prerm" \
  "$src/scripts/debian/postrm" "$stage/DEBIAN/"

mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/torii_${version}_${arch}.deb" >/dev/null
echo "$out/torii_${version}_${arch}.deb"
