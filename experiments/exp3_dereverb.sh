#!/usr/bin/env bash
# Experiment 3, dereverberation U-Net on reverberant pairs made with the real measured RIRs: a magnitude
# U-Net reconstructed with the reverberant phase and with Griffin-Lim, and the two-channel (real,
# imaginary) U-Net, all on the same 512/256 Hann STFT. The magnitude U-Net predicts a mask (a magnitude
# mapping learnt from scratch did not beat the reverberant input in this budget); the two-channel one maps.
source "$(dirname "$0")/common.sh"
EPOCHS=${UNET_EPOCHS:-4}  # this U-Net is cheap on CPU: it gets four times the other models' steps
STEPS=${UNET_STEPS:-150}
UNET=(--model unet --model-arg 'channels=[16,32,64,64,128]' --batch-size 8 --segment 64 --lr 1e-3)
REVERB_TESTS=(--pairs reverb-test --split test)

magnitude=$(features --pairs reverb-train --kind magnitude)
complex=$(features --pairs reverb-train --kind complex --n-fft 512 --win 512 --hop 256)
mag=$(train unet-magnitude-mask "${UNET[@]}" --model-arg output=mask --features "$magnitude")
ri=$(train unet-real-imag-600 "${UNET[@]}" --model-arg in_channels=2 --features "$complex")
"$SPECSTORE" evaluate --store "$STORE" --quiet "${REVERB_TESTS[@]}" --model-version "$mag" \
    --reconstruction noisy-phase
"$SPECSTORE" evaluate --store "$STORE" --quiet "${REVERB_TESTS[@]}" --model-version "$mag" \
    --reconstruction griffin-lim
"$SPECSTORE" evaluate --store "$STORE" --quiet "${REVERB_TESTS[@]}" --model-version "$ri"
# the metrics record each run's reconstruction: group by it to keep the two magnitude runs apart
where="split == 'test' and pairset == 'reverb-test' and (model == 'noisy' or model_version == '$mag' or (model_version == '$ri' and reconstruction == 'complex'))"
"$SPECSTORE" results --store "$STORE" --brief --group-by model,model_version,reconstruction --where "$where"
