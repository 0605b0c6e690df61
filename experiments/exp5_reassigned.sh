#!/usr/bin/env bash
# Experiment 5, inverting the reassigned spectrogram (80/80/20 Hamming, center False, NaN filled): the learned
# inverter, and phase-gradient heap integration (PGHI) of the phase carried by the reassigned frequency
# (instantaneous frequency) and time (group delay), on the clean speech of speakers not seen in training.
source "$(dirname "$0")/common.sh"
reassigned=$(features --pairs noisy-train --kind reassigned)
learned=$(train reassigned-inverter --model reassigned-inverter --batch-size 16 --segment 200 --lr 1e-3 \
    --features "$reassigned")
"$SPECSTORE" evaluate --store "$STORE" --quiet --pairs noisy-test --split test --model-version "$learned"
for method in reassigned-pghi zero-phase; do
    "$SPECSTORE" evaluate --store "$STORE" --quiet --pairs noisy-test --split test --method "$method" \
        --features "$reassigned"
done
# the reconstructions are compared with the clean signal they were computed from (the `noisy` row is the
# mixture, shown only for scale)
"$SPECSTORE" results --store "$STORE" --brief --group-by model,model_version \
    --where "split == 'test' and pairset == 'noisy-test' and model != 'noisy' and (model_version == '$learned' or model == 'reassigned-pghi' or model == 'zero-phase')" \
    --metrics snr,si_snr,lsd,pesq_wb
