#!/usr/bin/env bash
# Every seed experiment, in order (experiment 2 compares with experiment 1's CRN), then the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in data exp1_decomposition exp2_dccrn exp3_dereverb exp4_cnn exp5_reassigned; do
    echo "== $script"
    bash "experiments/$script.sh"
done
