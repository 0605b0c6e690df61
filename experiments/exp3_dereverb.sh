#!/usr/bin/env bash
# Experiment 3, dereverberation U-Net on reverberant pairs made with the real measured RIRs: a magnitude
# U-Net reconstructed with the reverberant phase and with Griffin-Lim, and the two-channel (real,
# imaginary) U-Net, all on the same 512/256 Hann STFT.
source "$(dirname "$0")/common.sh"
UNET=(--model unet --model-arg 'channels=[16,32,64,64,128]' --batch-size 8 --segment 64 --lr 1e-3)
REVERB_TESTS=(--pairs reverb-test --split test)

magnitude=$(features --pairs reverb-train --kind magnitude)
complex=$(features --pairs reverb-train --kind complex --n-fft 512 --win 512 --hop 256)
mag=$(train unet-magnitude "${UNET[@]}" --features "$magnitude")
ri=$(train unet-real-imag "${UNET[@]}" --model-arg in_channels=2 --features "$complex")
"$SPECSTORE" evaluate --store "$STORE" --quiet "${REVERB_TESTS[@]}" --model-version "$mag" \
    --reconstruction noisy-phase
"$SPECSTORE" evaluate --store "$STORE" --quiet "${REVERB_TESTS[@]}" --model-version "$mag" \
    --reconstruction griffin-lim
"$SPECSTORE" evaluate --store "$STORE" --quiet "${REVERB_TESTS[@]}" --model-version "$ri"
# reconstruction is a property of the run: group by run to keep the two magnitude runs apart
where="split == 'test' and pairset == 'reverb-test'"
"$SPECSTORE" results --store "$STORE" --brief --group-by model,model_version,run_id --where "$where"
