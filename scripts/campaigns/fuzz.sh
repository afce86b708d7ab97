#!/usr/bin/env bash
# A long mutation-fuzzing campaign of the decoder and reconcile/merge, and
# of the repository index's files (views, deltas, snapshots), seeded with
# the shared vectors (crates/core/tests/fuzz.rs).
#   scripts/campaigns/fuzz.sh [cases=1000000] [seed] [target: caches|index|both=both]
set -euo pipefail
cd "$(dirname "$0")/../.."
cases=${1:-1000000}
seed=${2:-$RANDOM$RANDOM}
target=${3:-both}
case $target in
  caches) filter=mutated_vectors ;;
  index) filter=mutated_index_files ;;
  both) filter= ;;
  *) echo "fuzz: the target is caches, index or both, not $target" >&2; exit 2 ;;
esac
echo "fuzz: $cases cases ($target), seed $seed"
start=$(date +%s)
BRCACHE_FUZZ_CASES=$cases BRCACHE_FUZZ_SEED=$seed \
  cargo test --release -q -p brcache-core --test fuzz -- $filter
echo "fuzz: $cases cases ($target) in $(( $(date +%s) - start )) s, no failure"
