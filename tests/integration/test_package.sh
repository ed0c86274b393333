#!/usr/bin/env bash
# The Debian package (scripts/package.sh) installs into a fresh root (dpkg --root, so nothing
# touches this machine), its installed config passes --check-config with the installed
# binary, its man pages render, and purging it leaves nothing behind.
source "$(dirname "$0")/lib.sh"

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(dirname "$TORII_BIN")
for tool in dpkg dpkg-deb dpkg-shlibdeps; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not found (Debian packages dpkg and dpkg-dev)"
    exit 77
  fi
done

deb=$("$SRC/scripts/package.sh" "$BUILD" "$T_TMP/pkg" | tail -1)
check "package built" test -f "$deb"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/sbin/torii ./usr/lib/systemd/system/torii.service ./etc/torii/torii.json \
         ./usr/share/man/man8/torii.8.gz ./usr/share/man/man5/torii.json.5.gz \
         ./usr/share/doc/torii/README.md ./usr/share/doc/torii/operations.md \
         ./usr/share/doc/torii/copyright ./usr/share/doc/torii/examples/torii.example.json \
         ./usr/share/bash-completion/completions/torii; do
  check "package holds $f" grep -qx "$f" <<<"$contents"
done
check "the config is a conffile" grep -qx /etc/torii/torii.json \
  <(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
check "Depends computed" grep -q '^ *Depends: .*libssl3' <(dpkg-deb -I "$deb")

# A fresh root with an empty dpkg database.
ROOT="$T_TMP/root"
mkdir -p "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates" "$ROOT/var/lib/dpkg/triggers" \
  "$ROOT/var/log"
touch "$ROOT/var/lib/dpkg/status" "$ROOT/var/lib/dpkg/available"
dpkg_root() {
  dpkg --root="$ROOT" --force-script-chrootless --force-depends --force-not-root \
    --log="$T_TMP/dpkg.log" "$@" >>"$T_TMP/dpkg.out" 2>&1
}
check "dpkg --root -i" dpkg_root -i "$deb"
check "installed (dpkg status)" grep -q '^Status: install ok installed' \
  <(dpkg-query --admindir="$ROOT/var/lib/dpkg" -s torii 2>/dev/null)
check "binary installed" test -x "$ROOT/usr/sbin/torii"
check "unit points at the installed paths" \
  grep -qx 'ExecStart=/usr/sbin/torii -c /etc/torii/torii.json' "$ROOT/usr/lib/systemd/system/torii.service"
out=$("$ROOT/usr/sbin/torii" --check-config -c "$ROOT/etc/torii/torii.json" 2>&1)
check "installed config passes --check-config ($out)" grep -q 'is valid' <<<"$out"
check "installed config has no routes" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
sys.exit(0 if c.get("routes", []) == [] else 1)' "$ROOT/etc/torii/torii.json"
check "installed config binds loopback only" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
addrs = [c["listen"]["https"], c["listen"]["http"], c["admin"]["listen"]]
sys.exit(0 if all(a.startswith("127.0.0.1:") for a in addrs) else 1)' "$ROOT/etc/torii/torii.json"
for m in man8/torii.8.gz man5/torii.json.5.gz; do
  check "man page $m renders without warnings" \
    test -z "$(man -l --warnings "$ROOT/usr/share/man/$m" 2>&1 >/dev/null)"
done

check "dpkg --root --purge" dpkg_root --purge torii
left=$(cd "$ROOT" && find . -path ./var/lib/dpkg -prune -o -path ./var/log -prune -o \
       -not -type d -print)
check_eq "nothing left in the root after purge" "" "$left"
check "not installed any more" bash -c \
  "! dpkg-query --admindir='$ROOT/var/lib/dpkg' -s torii 2>/dev/null | grep -q 'ok installed'"
check "this machine's dpkg database untouched" bash -c '! dpkg-query -W torii >/dev/null 2>&1'
if [ "$T_FAILS" -ne 0 ]; then cat "$T_TMP/dpkg.out"; fi
t_done
