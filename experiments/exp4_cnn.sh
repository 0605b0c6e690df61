#!/usr/bin/env bash
# Experiment 4, 1-D vs 2-D CNN denoising on 513-bin magnitudes (1024/512 Hann): the 1-D CNN sees one frame,
# the 2-D CNN 20 frames of causal context; each as the seed's mapping (|Y| -> |S|) and as a mask
# (|Y| -> M, M|Y|); scored by the seed's SNR, 10 log10 sum s^2 / sum (s - s^)^2, among others.
source "$(dirname "$0")/common.sh"
magnitude513=$(features --pairs noisy-train --kind magnitude --n-fft 1024 --hop 512)
CNN1D=(--model cnn1d --batch-size 16 --segment 64 --lr 1e-3 --features "$magnitude513")
CNN2D=(--model cnn2d --batch-size 8 --segment 16 --lr 1e-3 --features "$magnitude513")
versions=(
    "$(train cnn1d "${CNN1D[@]}")"
    "$(train cnn2d "${CNN2D[@]}")"
    "$(train cnn1d-mask "${CNN1D[@]}" --model-arg output=mask)"
    "$(train cnn2d-mask "${CNN2D[@]}" --model-arg output=mask)"
)
for version in "${versions[@]}"; do
    evaluate_all --model-version "$version"
done
METRICS=snr,si_snr,pesq_wb,stoi results "${versions[@]}"
