#!/usr/bin/env bash
# Experiment 1, spectrogram decomposition (Shi et al., Interspeech 2022): a first-stage CRN (mask) on |Y|;
# its masks decompose |Y| into n = 30 channels; a second-stage CRN on the 30-channel input. Beside the plain
# CRN (the first stage itself) and the oracle-IRM decomposition (the upper bound the paper's method aims at).
source "$(dirname "$0")/common.sh"
CRN=(--model crn --model-arg 'channels=[16,16,32,32,32]' --batch-size 16 --segment 100 --lr 2e-3)

magnitude=$(features --pairs noisy-train --kind magnitude)
stage1=$(train crn-plain "${CRN[@]}" --features "$magnitude")
# the first stage's masks over every split of the training pairs (train and valid), quantised to n levels
model_decomposed=$(features --pairs noisy-train --kind decomposed --n 30 --mask "model:$stage1")
oracle_decomposed=$(features --pairs noisy-train --kind decomposed --n 30 --mask oracle-irm)
stage2=$(train crn-decomposed-model "${CRN[@]}" --model-arg in_channels=30 --features "$model_decomposed")
oracle=$(train crn-decomposed-oracle "${CRN[@]}" --model-arg in_channels=30 --features "$oracle_decomposed")
for version in "$stage1" "$stage2" "$oracle"; do
    evaluate_all --model-version "$version"
done
results "$stage1" "$stage2" "$oracle"
