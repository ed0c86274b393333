#!/usr/bin/env bash
# Install the Debian packages torii needs to build, test (dpkg-dev, man-db and systemd for the
# package and unit checks) and benchmark, when missing.
# Usage: scripts/deps.sh [--bench | --fuzz]
set -euo pipefail
pkgs=(build-essential cmake pkg-config libssl-dev openssl libevent-dev libjansson-dev
      libcurl4-openssl-dev liblmdb-dev lmdb-utils liburcu-dev libcmocka-dev node-llhttp
      libnghttp2-dev
      curl ca-certificates python3 procps psmisc
      dpkg-dev man-db systemd
      # PyJWT for the JWT interoperability test (run with /usr/bin/python3)
      python3-jwt python3-cryptography
      # the WebSocket client and echo backend of test_websocket.sh (/usr/bin/python3)
      python3-websockets
      # testssl.sh (with dnsutils, bsdextrautils) runs the TLS scan test; iproute2's `ip`
      # brings up loopback in that test's own network namespace
      testssl.sh iproute2
      # HTTP/2 to clients (test_h2.sh): curl --http2, nghttp and h2load, the python h2 client
      nghttp2-client python3-h2
      # wrk drives the keep-alive load of the reload and upgrade tests
      wrk
      # static checks in scripts/lint.sh
      clang-format clang-tidy cppcheck
      # the web page's end-to-end test (test_ui.sh) drives Debian's chromium (playwright-core)
      chromium
      # pebble + pebble-challtestsrv: the test ACME CA of the ACME tests
      pebble
      # HTTP/2 (libnghttp2: backend.protocol h2/h2c); the HTTP/2 backend and gRPC tests run
      # nghttpd, python3-h2 and python3-grpcio backends (with /usr/bin/python3)
      libnghttp2-dev nghttp2-server python3-h2 python3-grpcio
      # the bench's smoke test (bench.smoke: scripts/bench.sh --smoke --only-torii): nginx as
      # its backend, h2load for the HTTP/2 rows, the WebSocket echo server and client
      nginx nghttp2-client python3-websockets
      # etcd (server and etcdctl): the three-member cluster of the fleet test (test_fleet.sh)
      etcd-server etcd-client)
case "${1:-}" in
  # the peers of scripts/bench.sh (h2o on its HTTP/2 rows only)
  --bench) pkgs+=(haproxy caddy h2o) ;;
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
