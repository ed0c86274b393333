# shellcheck shell=bash
# scripts/bench/rounds.sh - sourced by scripts/bench.sh: rounds interleaved across proxies,
# and the table of medians and of per-round ratios. Results live in R[NAME.KEY.ROUND]; a
# value that is not a number (e.g. "n/a (no h2)") is a marker printed as is.

# rounds FN NAME...: ROUNDS rounds; in each, FN NAME ROUND for every NAME in turn, the order
# reversed every other round (torii, HAProxy, nginx; nginx, HAProxy, torii; torii, ...), so
# that a drift of the machine hits every proxy alike and no proxy always goes first.
rounds() {
  local fn=$1 r i; shift
  local names=("$@")
  for r in $(seq 1 "$ROUNDS"); do
    for i in "${!names[@]}"; do
      if ((r % 2 == 0)); then i=$((${#names[@]} - 1 - i)); fi
      "$fn" "${names[$i]}" "$r"
    done
  done
}
# stat3: numbers on stdin -> "median min max" (lower median), nothing when there are none.
stat3() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)], a[1], a[NR] }'; }
# rvals NAME KEY: the numeric per-round values of one proxy's metric, one a line.
rvals() {
  local r v
  for r in $(seq 1 "$ROUNDS"); do
    v=${R[$1.$2.$r]:-}
    [[ "$v" =~ ^[0-9]+(\.[0-9]+)?$ ]] && echo "$v"
  done
  return 0
}
# marker NAME KEY: the first non-numeric value recorded (why a cell is not a number).
marker() {
  local r v
  for r in $(seq 1 "$ROUNDS"); do
    v=${R[$1.$2.$r]:-}
    [ -n "$v" ] && ! [[ "$v" =~ ^[0-9]+(\.[0-9]+)?$ ]] && { echo "$v"; return 0; }
  done
  echo "-"
}
# cell NAME KEY: the median of a proxy's rounds, or its marker.
cell() {
  local s; s=$(rvals "$1" "$2" | stat3)
  if [ -n "$s" ]; then echo "${s%% *}"; else marker "$1" "$2"; fi
}
# rcell A B KEY: A/B per round (rounds where both are numbers), as "median (min-max)".
rcell() {
  local r a b s
  s=$(for r in $(seq 1 "$ROUNDS"); do
        a=${R[$1.$3.$r]:-}; b=${R[$2.$3.$r]:-}
        [[ "$a" =~ ^[0-9.]+$ && "$b" =~ ^[0-9.]+$ ]] &&
          awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.4f\n", a / b }'
      done | stat3)
  if [ -n "$s" ]; then
    # shellcheck disable=SC2086
    set -- $s
    awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN { printf "%.2f (%.2f-%.2f)\n", m, lo, hi }'
  elif [ "$(marker "$1" "$3")" != - ]; then marker "$1" "$3"
  elif [ "$(marker "$2" "$3")" != - ]; then marker "$2" "$3"
  else echo "-"; fi
}
# The table: COLS are the proxies shown (torii first); a row prints each one's median and
# the ratio torii/peer per round as median (min-max).
table_head() {
  local c line
  line=$(printf '%-56s' metric)
  for c in "${COLS[@]}"; do line+=$(printf ' %11s' "$c"); done
  for c in "${COLS[@]:1}"; do line+=$(printf ' %18s' "t/$c"); done
  echo "$line"
}
trow() { # label key
  local c line
  line=$(printf '%-56s' "$1")
  for c in "${COLS[@]}"; do line+=$(printf ' %11s' "$(cell "$c" "$2")"); done
  for c in "${COLS[@]:1}"; do line+=$(printf ' %18s' "$(rcell torii "$c" "$2")"); done
  echo "$line"
}
