#!/usr/bin/env bash
# test_fleet_tickets.sh - shared session ticket keys in fleet mode (docs/fleet.md): three etcd
# members, three nodes with tls.ticket_rotate_s = 3. Exactly one node creates the fleet's key
# set; a TLS 1.3 session established on A resumes on B and C ("Reused, TLSv1.3"), and its
# ticket names the same key as one issued by B; etcd holds the set sealed (no key name, the
# part of the keys every ticket shows, in the value or in the envelope); after one rotation
# the session still resumes on B and C (the previous key), after two it no longer does;
# three nodes rotating at once: exactly one wins, the other two adopt its set.
# Rotations are held with debug.stall_file ("fleet-tickets": rotations held; "fleet-tickets-
# watch": the key watch held, rotations free; "fleet-tickets-all": both) and released only
# where a step wants them, so no step depends on the machine's speed: a step that took longer
# than a rotation period (another rotation could have started) is done again, at most 3 times.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fleet.sh"

P=3 # tls.ticket_rotate_s
fleet_conf_extra() { printf '  "tls": {"ticket_rotate_s": %s},\n' "$P"; }
hold() { # hold WHAT NODE...: write WHAT to the nodes' stall files
  local what=$1 n; shift
  for n in "$@"; do printf '%s\n' "$what" >"$T_TMP/$n/stall"; done
}
mkdir -p "$T_TMP/a" "$T_TMP/b" "$T_TMP/c"
hold fleet-tickets a b c
now_ms() { echo $(($(date +%s%N) / 1000000)); }

keys_rev() { # mod_revision of /it/t/keys (empty when there is none)
  local out
  out=$(ectl get /it/t/keys -w json 2>/dev/null) || return 1
  python3 -c 'import json,sys
k = json.loads(sys.argv[1]).get("kvs") or []
print(k[0]["mod_revision"] if k else "")' "$out"
}
has_keys() { [ -n "$(keys_rev)" ]; }
rev_is_not() { local r; r=$(keys_rev) && [ -n "$r" ] && [ "$r" != "$1" ]; }
log_count() { # log_count NODE TEXT: lines of the node's log holding TEXT
  local n; n=$(grep -cF -- "$2" "$T_TMP/$1/torii.log") || true
  echo "${n:-0}"
}
sum_logs() { echo $(($(log_count a "$1") + $(log_count b "$1") + $(log_count c "$1"))); }
installed() { [ "$(log_count "$1" "session ticket keys of revision $2 installed")" -ge 1 ]; }
all_installed() { installed a "$1" && installed b "$1" && installed c "$1"; }

req() { printf 'GET / HTTP/1.1\r\nHost: tk.fleet.test\r\nConnection: close\r\n\r\n'; }
new_session() { # new_session NODE FILE: a full TLS 1.3 handshake, its session saved in FILE
  rm -f "$2"
  req | timeout 20 openssl s_client -connect "${ADDR[$1]}:$T_HTTPS" -servername tk.fleet.test \
    -tls1_3 -ign_eof -sess_out "$2" >/dev/null 2>&1
  [ -s "$2" ]
}
resumes_on() { # resumes_on NODE FILE: the session of FILE resumes on NODE
  local out
  out=$(req | timeout 20 openssl s_client -connect "${ADDR[$1]}:$T_HTTPS" \
    -servername tk.fleet.test -tls1_3 -ign_eof -sess_in "$2" 2>/dev/null)
  [[ "$out" == *"Reused, TLSv1.3"* ]]
}
full_on() { # full_on NODE FILE: a full handshake when offering FILE's session
  local out
  out=$(req | timeout 20 openssl s_client -connect "${ADDR[$1]}:$T_HTTPS" \
    -servername tk.fleet.test -tls1_3 -ign_eof -sess_in "$2" 2>/dev/null)
  [[ "$out" == *"New, TLSv1.3"* ]]
}
key_name() { # the key name (first 16 bytes) of the session's ticket, in hex
  local txt
  txt=$(openssl sess_id -in "$1" -noout -text 2>/dev/null)
  python3 -c 'import sys
lines = sys.argv[1].splitlines()
i = [n for n, l in enumerate(lines) if "TLS session ticket:" in l][0]
print(lines[i + 1].split(" - ", 1)[1][:47].replace("-", " ").replace(" ", ""))' "$txt"
}

# ---- the fleet, and a certificate every node serves
fleet_up
mkcert tk ec 30 tk.fleet.test
post_cert a tk tk
check_eq "POST on A" 201 "$T_STATUS"
for n in b c; do check "$n serves tk.fleet.test" t_wait_for serves "$n" tk.fleet.test "$(serial_of tk)"; done

# ---- one key set for the fleet, created once, installed everywhere
check "a ticket key set in etcd" t_wait_for has_keys
r0=$(keys_rev)
check "every node installed the set of revision $r0" t_wait_for all_installed "$r0"
check_eq "exactly one node created it" 1 "$(sum_logs "session ticket keys created")"

# ---- a session established on A resumes on B and C
check "a TLS 1.3 session on A" new_session a "$T_TMP/s0.pem"
check "A's session resumes on B (Reused, TLSv1.3)" resumes_on b "$T_TMP/s0.pem"
check "A's session resumes on C (Reused, TLSv1.3)" resumes_on c "$T_TMP/s0.pem"
check "a TLS 1.3 session on B" new_session b "$T_TMP/sb.pem"
name0=$(key_name "$T_TMP/s0.pem")
check_eq "A's and B's tickets name the same key" "$name0" "$(key_name "$T_TMP/sb.pem")"
check "the key name is 16 bytes" test "${#name0}" = 32

# ---- etcd holds the set sealed: not the key name, in the value nor under its base64
val=$(ectl get /it/t/keys --print-value-only)
verdict=$(python3 -c 'import base64,json,sys
val, name = sys.argv[1], bytes.fromhex(sys.argv[2])
d = json.loads(val)
assert sorted(d) == ["keys", "v"], sorted(d)
assert d["keys"].startswith("TKEK:"), d["keys"][:8]
env = base64.b64decode(d["keys"][5:])
assert env[:4] == b"TKEK" and len(env) in (25 + 8 + 80 + 16, 25 + 8 + 160 + 16), len(env)
assert name not in val.encode() and name.hex() not in val.lower(), "key name in the value"
assert name not in env, "key name in the envelope"
print("sealed")' "$val" "$name0" 2>&1)
check_eq "etcd holds the ticket keys sealed, no key byte in clear" sealed "$verdict"

# ---- one rotation (by A; B and C held): the previous key still decrypts on B and C.
# A rotation made at or after time L is not followed by another before L + P: the step is
# valid when the rotations are held again before then.
rotated=0
for attempt in 1 2 3; do
  new_session a "$T_TMP/s1.pem" || continue
  rb=$(keys_rev)
  tA=$(now_ms)
  hold "" a
  t_wait_for rev_is_not "$rb"
  hold fleet-tickets a
  if [ $(($(now_ms) - tA)) -lt $((P * 1000)) ]; then rotated=1; break; fi
  echo "# attempt $attempt took longer than a rotation period: again"
done
check_eq "A rotated the set once" 1 "$rotated"
r1=$(keys_rev)
check "every node installed the rotated set (revision $r1)" t_wait_for all_installed "$r1"
check "after a rotation, A's earlier session resumes on B" resumes_on b "$T_TMP/s1.pem"
check "after a rotation, A's earlier session resumes on C" resumes_on c "$T_TMP/s1.pem"

# ---- three nodes rotating at once (their watches held, so none learns of another's
# rotation): exactly one transaction wins, the other two adopt the winner's set
outcomes() { # at least N rotations won or lost since won0/lost0
  [ $(($(sum_logs "session ticket keys rotated") + $(sum_logs "another node rotated first") - won0 - lost0)) -ge "$1" ]
}
raced=0
for attempt in 1 2 3; do
  check "a session on C under the current key" new_session c "$T_TMP/s2.pem"
  won0=$(sum_logs "session ticket keys rotated")
  lost0=$(sum_logs "another node rotated first")
  hold fleet-tickets-all a b c
  tR=$(now_ms)
  low=$((tR > tA + P * 1000 ? tR : tA + P * 1000)) # the set is due at the earliest then
  hold fleet-tickets-watch a b c
  t_wait_for outcomes 3
  hold fleet-tickets-all a b c
  took=$(($(now_ms) - low))
  hold fleet-tickets a b c
  if [ "$took" -lt $((P * 1000)) ]; then raced=1; break; fi
  echo "# attempt $attempt took longer than a rotation period: again"
  tA=$low
done
check_eq "the three nodes rotated at once" 1 "$raced"
check_eq "exactly one rotation won" 1 $(($(sum_logs "session ticket keys rotated") - won0))
check_eq "the two others lost and adopted its set" 2 $(($(sum_logs "another node rotated first") - lost0))
r2=$(keys_rev)
check "every node installed the winner's set (revision $r2)" t_wait_for all_installed "$r2"
check "the session from before this rotation resumes on A" resumes_on a "$T_TMP/s2.pem"
check "two rotations later, A's first session gets a full handshake on B" full_on b "$T_TMP/s1.pem"

for n in "${NODES[@]}"; do node_stop "$n"; done
check_eq "every node exited with status 0 (no sanitizer report)" "" "$NODE_BAD"
logs=$(cat "$T_TMP"/a/torii.log "$T_TMP"/b/torii.log "$T_TMP"/c/torii.log)
case "$logs" in
  *"$name0"* | *"${name0^^}"*) fail "a ticket key name in a node's log" ;;
  *) ok "no ticket key name in the logs" ;;
esac
if [ "$T_FAILS" -ne 0 ]; then for n in "${NODES[@]}"; do echo "--- $n"; tail -n 30 "$T_TMP/$n/torii.log"; done; fi
t_done
