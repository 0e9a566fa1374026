#!/usr/bin/env bash
# Runs test binaries and prints one table: every test passed, failed, or ignored with
# the reason its own code gave (tests/src/ignore.rs). Used in the kernel matrix's
# guests (scripts/kernel-matrix.sh) and on the host:
#
#   scripts/test-table.sh <label> <name>=<test binary> ...
#
# Each table line starts with "table: " so a console log can be grepped for it. Exits
# 1 when a test failed or a binary ended without a result.
set -uo pipefail
label=$1
shift
out=$(mktemp -d "${TMPDIR:-/tmp}/kadvisor-table.XXXXXX")
status=0
: >"$out/failed"
: >"$out/passed"
: >"$out/ignored"
for entry in "$@"; do
  name=${entry%%=*}
  bin=${entry#*=}
  echo "=== $name"
  # --show-output: what passing tests print (measured figures, ignore reasons).
  KADVISOR_IGNORED_LOG="$out/$name.ignored" "$bin" --show-output 2>&1 | tee "$out/$name.out"
  rc=${PIPESTATUS[0]}
  # "test <name> ... ok|FAILED|ignored" (libtest's pretty format).
  sed -n 's/^test \(.*\) \.\.\. \(ok\|FAILED\|ignored.*\)$/\1|\2/p' "$out/$name.out" >"$out/$name.results"
  while IFS='|' read -r test result; do
    reason=$(grep -F -- "$test|" "$out/$name.ignored" 2>/dev/null | head -n1 | cut -d'|' -f2-)
    case "$result" in
    ok) if [[ -n "$reason" ]]; then echo "$name::$test|$reason" >>"$out/ignored"; else echo "$name::$test" >>"$out/passed"; fi ;;
    FAILED) echo "$name::$test" >>"$out/failed" ;;
    *) echo "$name::$test|#[ignore] ${result#ignored}" >>"$out/ignored" ;;
    esac
  done <"$out/$name.results"
  if ((rc != 0)) && ! grep -q '|FAILED$' "$out/$name.results"; then
    echo "$name (the binary exited $rc without a failed test: crash or timeout)" >>"$out/failed"
  fi
  ((rc == 0)) || status=1
done
passed=$(wc -l <"$out/passed")
failed=$(wc -l <"$out/failed")
ignored=$(wc -l <"$out/ignored")
echo "table: === $label: passed $passed, failed $failed, ignored $ignored"
while read -r t; do echo "table:   FAILED  $t"; done <"$out/failed"
while IFS='|' read -r t reason; do echo "table:   ignored $t: $reason"; done <"$out/ignored"
# Passed tests, one binary per line.
awk -F'::' '{n[$1] = n[$1] " " $2; c[$1]++} END {for (b in c) printf "table:   passed  %s (%d):%s\n", b, c[b], n[b]}' "$out/passed" | sort
rm -rf "$out"
exit $status
