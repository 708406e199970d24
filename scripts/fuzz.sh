#!/usr/bin/env bash
# Runs every native Go fuzz target of the module, one at a time, for
# FUZZTIME each (default 30s; anything -fuzztime takes: 2m, 10000x), and
# prints a summary. Not for CI: it is for a developer's machine or a
# nightly box.
#
#   scripts/fuzz.sh                    # every target, 30s each
#   FUZZTIME=2m scripts/fuzz.sh        # longer
#   scripts/fuzz.sh ./server ./policy  # only these packages
#
# Targets are found with `go test -list '^Fuzz'`. A failing input is
# written by Go to the package's testdata/fuzz/<Target>/ directory, where
# it becomes a regression seed of `go test`: commit it with the fix. Exits
# non-zero if any target failed (or could not be listed).
set -uo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-30s}"
pkgs=("$@")
[ ${#pkgs[@]} -eq 0 ] && pkgs=(./...)

logdir=$(mktemp -d "${TMPDIR:-/tmp}/mxgate-fuzz.XXXXXX")

# `go test -list` prints a package's matching names, then "ok <pkg> ...".
if ! listing=$(go test -list '^Fuzz' "${pkgs[@]}" 2>"$logdir/list.err"); then
  echo "go test -list failed:" >&2
  cat "$logdir/list.err" >&2
  exit 2
fi
targets=()
names=()
while IFS= read -r line; do
  case "$line" in
    Fuzz*) names+=("$line") ;;
    ok*)
      pkg=$(awk '{print $2}' <<<"$line")
      for n in ${names[@]+"${names[@]}"}; do targets+=("$pkg $n"); done
      names=()
      ;;
    *) names=() ;;
  esac
done <<<"$listing"

if [ ${#targets[@]} -eq 0 ]; then
  echo "no fuzz targets found in ${pkgs[*]}" >&2
  exit 2
fi
echo "${#targets[@]} fuzz targets, $fuzztime each; logs in $logdir"

results=()
failed=0
for t in "${targets[@]}"; do
  pkg=${t% *}
  name=${t#* }
  log="$logdir/$(tr '/' '_' <<<"$pkg").$name.log"
  printf '=== %s %s ... ' "$pkg" "$name"
  start=$(date +%s)
  if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1; then
    status=ok
  else
    status=FAIL
    failed=$((failed + 1))
  fi
  secs=$(($(date +%s) - start))
  # The last progress line: "fuzz: elapsed: 30s, execs: 123456 (0/sec),
  # new interesting: 3 (total: 57)"; its rate is always 0, so it goes.
  stats=$(grep -E '^fuzz: elapsed' "$log" | tail -n 1 | sed -E 's/^fuzz: elapsed: [^,]*, //; s/ \([0-9]+\/sec\)//')
  if [ "$status" = FAIL ]; then
    crasher=$(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$log" | head -n 1)
    if [ -n "$crasher" ]; then
      dir=$(go list -f '{{.Dir}}' "$pkg")
      stats="new failing input: ${dir#"$PWD"/}/$crasher"
    else
      stats="(no input written: build or setup failure?)"
    fi
  fi
  echo "$status (${secs}s) $stats"
  if [ "$status" = FAIL ]; then
    # The failure, and where Go wrote the input.
    grep -E 'Failing input written to|--- FAIL|panic:|Error' "$log" | head -n 5 | sed 's/^/    /'
    echo "    full log: $log"
  fi
  results+=("$(printf '%-4s %-45s %-28s %s' "$status" "$pkg" "$name" "$stats")")
done

echo
echo "--- summary ($fuzztime per target)"
printf '%s\n' "${results[@]}"
echo
if [ "$failed" -gt 0 ]; then
  echo "$failed of ${#targets[@]} fuzz targets FAILED; new inputs are under each package's testdata/fuzz/ (git status shows them)"
  exit 1
fi
echo "all ${#targets[@]} fuzz targets passed"
rm -rf "$logdir"
