#!/usr/bin/env bash
# A long mutation-fuzzing campaign of the decoder and reconcile/merge,
# seeded with the shared vectors (crates/core/tests/fuzz.rs).
#   scripts/campaigns/fuzz.sh [cases=1000000] [seed]
set -euo pipefail
cd "$(dirname "$0")/../.."
cases=${1:-1000000}
seed=${2:-$RANDOM$RANDOM}
echo "fuzz: $cases cases, seed $seed"
start=$(date +%s)
BRCACHE_FUZZ_CASES=$cases BRCACHE_FUZZ_SEED=$seed \
  cargo test --release -q -p brcache-core --test fuzz
echo "fuzz: $cases cases in $(( $(date +%s) - start )) s, no failure"
