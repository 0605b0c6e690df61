# Shared settings and helpers of the seed experiments (sourced by the other scripts; see docs/EXPERIMENTS.md).
# Override any of these from the environment, e.g. WORK=/data/exp STEPS=2000 experiments/run_all.sh
set -euo pipefail
SPECSTORE=${SPECSTORE:-.venv/bin/specstore}
REAL=${REAL:-../shared/data/real}      # the real recordings (clean speech, noise, RIRs, VoiceBank-DEMAND)
WORK=${WORK:-/tmp/specstore-experiments}
STORE=${STORE:-$WORK/store}
COPIES=${COPIES:-30}                   # noisy/reverberant pairs per training utterance (each its own draws)
EPOCHS=${EPOCHS:-2}                    # the CPU budget of this machine: EPOCHS x STEPS optimizer steps per model
STEPS=${STEPS:-80}
VERSIONS=$WORK/versions.txt            # "label version" lines, read by the later experiments and the tables
TEST_SETS=("noisy-test" "voicebank-demand-given")
mkdir -p "$WORK"
touch "$VERSIONS"

# feature set id of a `specstore features` run (the set is found, not recomputed, when it exists)
features() { "$SPECSTORE" features --store "$STORE" --quiet "$@" | sed -n 's/^feature set \([^ ]*\) .*/\1/p'; }

# train LABEL ARGS...: train once per label (a rerun reuses the recorded version), print the version
train() {
    local label=$1 version
    shift
    version=$(awk -v l="$label" '$1 == l {print $2}' "$VERSIONS" | tail -n 1)
    if [ -z "$version" ]; then
        version=$("$SPECSTORE" train --store "$STORE" --quiet --epochs "$EPOCHS" --max-steps "$STEPS" \
            --seed 0 "$@" | tail -n 1)
        echo "$label $version" >>"$VERSIONS"
    fi
    echo "$version"
}

version_of() { awk -v l="$1" '$1 == l {print $2}' "$VERSIONS" | tail -n 1; }

# evaluate ARGS... on every test set: held-out speakers of the real corpus, and the real VoiceBank-DEMAND pairs
evaluate_all() {
    for pairs in "${TEST_SETS[@]}"; do
        "$SPECSTORE" evaluate --store "$STORE" --quiet --pairs "$pairs" --split test "$@"
    done
}

# results table of the given model versions (and the noisy input) on the test sets
results() {
    local versions=("$@") where="model == 'noisy'" sets="pairset == 'none'"
    for v in "${versions[@]}"; do where="$where or model_version == '$v'"; done
    for p in "${TEST_SETS[@]}"; do sets="$sets or pairset == '$p'"; done
    "$SPECSTORE" results --store "$STORE" --brief --group-by model,model_version,pairset \
        --where "split == 'test' and ($sets) and ($where)" ${METRICS:+--metrics "$METRICS"}
}
