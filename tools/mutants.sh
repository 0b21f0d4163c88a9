#!/usr/bin/env bash
# Mutation testing of the consensus core with cargo-mutants: each mutant is
# one small change to a rule (a `>` made `>=`, a function that returns a
# default, a `+` made `-`), and the tests must fail for every one of them.
#
# Not part of CI: a full run takes hours on two cores (README, "Mutation
# testing"). Run it after changing consensus, work, chain or store code,
# at least on what changed:
#
#   tools/mutants.sh                      # every group
#   tools/mutants.sh consensus work       # some groups
#   tools/mutants.sh --in-diff main       # only code changed since `main`
#   tools/mutants.sh --iterate work       # only what the last run did not catch
#   tools/mutants.sh --list               # list the mutants, run nothing
#
# Each group mutates some files and runs only the tests that cover them,
# by module path (the narrowest filter that still catches what it should;
# a bare word such as `work` would also run every test whose name holds
# "network", real nodes included), built with the
# `mutants` profile of Cargo.toml. Results go to target/mutants-out/GROUP/
# mutants.out (caught.txt, missed.txt, unviable.txt, timeout.txt); the
# summary at the end counts them per group. Missed mutants must be listed,
# with their reason, in tests/mutants-missed.md; exclusions live in
# .cargo/mutants.toml, each with the reason it is equivalent or untestable.
# The exit status is 1 when a group has a missed mutant that is not listed
# there as equivalent.
set -euo pipefail
cd "$(dirname "$0")/.."

# group | files to mutate (globs) | cargo test arguments
# New consensus, ledger or job code gets a group (or joins one) as it lands.
GROUPS_TABLE='
consensus | src/consensus/**                  | --lib --test main -- consensus:: reorg:: onnx_linear:: transactions:: job_rules::
work      | src/work/**                       | --lib --test main -- work:: consensus:: reorg:: onnx_linear:: job_rules::
chain     | src/chain/**                      | --lib --test main -- chain::encoding chain::hash chain::tests consensus:: reorg:: fuzz_corpus:: transactions::
store     | src/store/**                      | --lib --test main -- store:: reorg:: transactions:: job_rules::
tx        | src/tx/**                         | --lib --test main -- tx:: fuzz_corpus:: transactions:: job_rules::
ledger    | src/ledger/**                     | --lib --test main -- ledger:: reorg:: transactions:: job_rules::
mempool   | src/node/mempool.rs               | --lib --test main -- mempool:: fuzz_corpus::
p2p       | src/p2p/peerbook.rs src/p2p/wire.rs src/p2p/txrelay.rs src/p2p/handshake.rs | --lib -- p2p::peerbook p2p::wire p2p::txrelay p2p::handshake
'

diff_base=""
list=""
iterate=()
wanted=()
while [ $# -gt 0 ]; do
    case "$1" in
        --in-diff) diff_base="$2"; shift 2 ;;
        --list) list=1; shift ;;
        --iterate) iterate=(--iterate); shift ;;
        -h|--help) sed -n "2,24p" "$0"; exit 0 ;;
        -*) echo "mutants.sh: unknown option $1" >&2; exit 2 ;;
        *) wanted+=("$1"); shift ;;
    esac
done

if ! command -v cargo-mutants >/dev/null; then
    echo "== installing cargo-mutants (crates.io)"
    cargo install --locked cargo-mutants --version 27.1.0
fi
# The onnx_linear tests need ONNX Runtime (installed into .venv once).
ORT_DYLIB_PATH="$(./tools/ort_lib.sh)"
export ORT_DYLIB_PATH

mkdir -p target/mutants-out
# cargo-mutants builds each mutant in a copy of the tree; one target dir
# for all of them keeps the dependencies built once and the crate's
# rebuilds incremental.
# Set CARGO_TARGET_DIR to run two groups side by side.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/mutants-build}"
diff_args=()
if [ -n "$diff_base" ]; then
    git diff "$diff_base" -- src > target/mutants-out/changes.diff
    diff_args=(--in-diff target/mutants-out/changes.diff)
fi

summary=()
status=0
while IFS='|' read -r name files test_args; do
    name=$(echo "$name" | xargs)
    [ -n "$name" ] || continue
    if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $name " ]]; then
        continue
    fi
    file_args=()
    for f in $files; do file_args+=(-f "$f"); done
    # shellcheck disable=SC2086 # the test arguments are words
    if [ -n "$list" ]; then
        cargo mutants "${file_args[@]}" "${diff_args[@]}" --list
        continue
    fi
    echo "== $name: $files; cargo test $test_args"
    started=$(date +%s)
    # cargo-mutants exits non-zero when a mutant is missed; the counts
    # below decide.
    cargo mutants --profile mutants --no-shuffle --minimum-test-timeout 20 \
        "${file_args[@]}" "${diff_args[@]}" "${iterate[@]}" -o "target/mutants-out/$name" \
        -- $test_args || true
    out="target/mutants-out/$name/mutants.out"
    count() { if [ -f "$out/$1.txt" ]; then grep -c . "$out/$1.txt" || true; else echo 0; fi; }
    caught=$(count caught)
    # With --iterate, what earlier runs caught (or found unviable) is in
    # previously_caught.txt and was not tested again.
    earlier=$(count previously_caught)
    missed=$(count missed)
    unviable=$(count unviable)
    timeout=$(count timeout)
    minutes=$(( ($(date +%s) - started + 59) / 60 ))
    summary+=("$(printf '%-10s caught %4s  missed %3s  unviable %3s  timeout %3s  earlier %4s  %4s min' \
        "$name" "$caught" "$missed" "$unviable" "$timeout" "$earlier" "$minutes")")
    # A missed mutant must be listed in tests/mutants-missed.md.
    if [ -f "$out/missed.txt" ]; then
        while IFS= read -r mutant; do
            [ -n "$mutant" ] || continue
            # "FILE:LINE:COL: WHAT" is listed as "FILE: WHAT", which line
            # changes do not move.
            listed="${mutant%%:*}: ${mutant#*: }"
            if ! grep -qF -- "$listed" tests/mutants-missed.md; then
                echo "missed and not listed in tests/mutants-missed.md: $mutant"
                status=1
            fi
        done < "$out/missed.txt"
    fi
done <<< "$GROUPS_TABLE"

if [ ${#summary[@]} -gt 0 ]; then
    echo
    echo "== mutants per group (target/mutants-out/GROUP/mutants.out)"
    printf '%s\n' "${summary[@]}"
fi
exit $status
