#!/usr/bin/env bash
# Experiment 2, DCCRN (Hu et al., 2020) in its E (real LSTM, mask mode E) and CL (complex LSTM) variants,
# trained with the SI-SNR loss on 512/400/100 complex spectra, beside the CRN of experiment 1.
source "$(dirname "$0")/common.sh"
DCCRN=(--model dccrn --model-arg 'channels=[8,16,16,32,32,32]' --model-arg rnn_units=64 --batch-size 8
    --segment 64 --lr 1e-3)

complex=$(features --pairs noisy-train --kind complex)
e=$(train dccrn-E "${DCCRN[@]}" --model-arg variant=E --features "$complex")
cl=$(train dccrn-CL "${DCCRN[@]}" --model-arg variant=CL --features "$complex")
for version in "$e" "$cl"; do
    evaluate_all --model-version "$version"
done
results "$e" "$cl" "$(version_of crn-plain)"
