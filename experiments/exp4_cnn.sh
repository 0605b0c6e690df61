#!/usr/bin/env bash
# Experiment 4, 1-D vs 2-D CNN denoising on 513-bin magnitudes (1024/512 Hann): the 1-D CNN sees one frame,
# the 2-D CNN 20 frames of causal context; both map |Y| to |S|; the seed's SNR, 10 log10 sum s^2 / sum (s - s^)^2.
source "$(dirname "$0")/common.sh"
magnitude513=$(features --pairs noisy-train --kind magnitude --n-fft 1024 --hop 512)
one=$(train cnn1d --model cnn1d --batch-size 16 --segment 64 --lr 1e-3 --features "$magnitude513")
two=$(train cnn2d --model cnn2d --batch-size 8 --segment 16 --lr 1e-3 --features "$magnitude513")
for version in "$one" "$two"; do
    evaluate_all --model-version "$version"
done
METRICS=snr,si_snr,pesq_wb results "$one" "$two"
