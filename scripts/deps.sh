#!/usr/bin/env bash
# Install the Debian packages torii needs to build, test (dpkg-dev, man-db and systemd for the
# package and unit checks) and benchmark, when missing.
# Usage: scripts/deps.sh [--bench | --fuzz]
set -euo pipefail
pkgs=(build-essential cmake pkg-config libssl-dev openssl libevent-dev libjansson-dev
      libcurl4-openssl-dev liblmdb-dev lmdb-utils liburcu-dev libcmocka-dev node-llhttp
      curl ca-certificates python3 procps psmisc
      dpkg-dev man-db systemd
      # PyJWT for the JWT interoperability test (run with /usr/bin/python3)
      python3-jwt python3-cryptography
      # testssl.sh (with dnsutils, bsdextrautils) runs the TLS scan test; iproute2's `ip`
      # brings up loopback in that test's own network namespace
      testssl.sh iproute2
      # wrk drives the keep-alive load of the reload and upgrade tests
      wrk
      # static checks in scripts/lint.sh
      clang-format clang-tidy cppcheck
      # the web page's end-to-end test (test_ui.sh) drives Debian's chromium (playwright-core)
      chromium
      # pebble + pebble-challtestsrv: the test ACME CA of the ACME tests
      pebble
      # etcd (server and etcdctl): the three-member cluster of the fleet test (test_fleet.sh)
      etcd-server etcd-client)
case "${1:-}" in
  --bench) pkgs+=(haproxy nginx nghttp2-client) ;;
  --fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
esac
missing=()
# node + npm run the JWKS interoperability test (npm package "jose"); a node that is already
# on the PATH (from any source) is kept as is.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
