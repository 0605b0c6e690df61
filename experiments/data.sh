#!/usr/bin/env bash
# The experiments' data: the real clean speech by speaker (held-out speakers in its test split), the real
# VoiceBank-DEMAND test pairs, and noisy / reverberant pairs made with the real noise recordings and RIRs.
source "$(dirname "$0")/common.sh"
.venv/bin/python experiments/arrange_real.py "$REAL/clean" "$WORK/real-clean"
"$SPECSTORE" ingest --store "$STORE" --corpus folder --source "$WORK/real-clean" --name real \
    --splits 0.6,0.1,0.3 --quiet
"$SPECSTORE" ingest --store "$STORE" --corpus voicebank-demand --source "$REAL/voicebank-demand" --quiet
for kind in noisy reverb; do
    source_args=(--noise "$REAL/noise")
    [ "$kind" = reverb ] && source_args=(--rir "$REAL/rir")
    "$SPECSTORE" pairs --store "$STORE" --corpus real --kind "$kind" --name "$kind-train" "${source_args[@]}" \
        --splits train,valid --copies "$COPIES" --seed 0 --quiet
    "$SPECSTORE" pairs --store "$STORE" --corpus real --kind "$kind" --name "$kind-test" "${source_args[@]}" \
        --splits test --copies 3 --seed 1 --quiet
done
