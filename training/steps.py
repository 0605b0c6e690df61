"""The loss of one batch, by what a model consumes and produces (its `input_kind` and `output`)."""

from __future__ import annotations

import torch

from training.losses import mapping_mse, si_snr_loss, signal_approximation


def batch_loss(model, normalizer, batch: dict, features) -> torch.Tensor:
    kind, output = model.input_kind, model.output
    if kind == "complex" and output == "crm":  # DCCRN: SI-SNR on waveforms through its in-graph iSTFT
        return si_snr_loss(*waveforms(model, batch))
    if kind == "reassigned":  # the inverter: the clean signal's triple -> its waveform
        estimate = model(batch["target"])
        start = model.sample_offset
        return mapping_mse(estimate, batch["clean"][:, start : start + estimate.shape[-1]])
    noisy = batch.get("magnitude", batch["input"])  # decomposed: |Y| beside the expanded channels
    out = model(normalizer(batch["input"]))
    if output == "mask":
        return signal_approximation(out, noisy, batch["target"])
    return mapping_mse(out, batch["target"])


def waveforms(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(enhanced, clean) waveforms of a complex batch, both through the model's iSTFT."""
    frames = batch["input"].shape[1]
    length = (frames - 1) * model.config.hop_length
    enhanced = model.istft(model.forward_spec(batch["input"]), length)
    clean = model.istft(batch["target"], length)
    return enhanced, clean
