"""Models of the literature, chosen by registry name (the design brief's contract names).

`build_model(name, **config)` builds one; `MODELS.get(name).config_class` is its config dataclass. Importing
this package registers every model:

| name | module | source |
|---|---|---|
| `cnn1d`, `cnn2d` | `cnn` | 1-D CNN over the bins of single frames; 2-D CNN over a 20-frame causal context |
| `unet` | `unet` | Jansson et al. 2017 U-Net, as used for dereverberation by Ernst et al. 2018 |
| `crn` | `crn` | Tan & Wang 2018; with n input channels the decomposition model of Shi et al. 2022 |
| `dccrn` | `dccrn` | Hu et al. 2020, variants R, C, E, CL |
| `reassigned-inverter` | `inverter` | waveform from the reassigned spectrogram triple |
"""

from training.models import cnn, crn, dccrn, inverter, unet  # noqa: F401  (registers the models)
from training.models.base import MODELS, OUTPUTS, SpecModel, build_model, model_class
from training.models.cnn import CNN1D, CNN2D, CNN1DConfig, CNN2DConfig
from training.models.crn import CRN, CRNConfig
from training.models.dccrn import DCCRN, DCCRNConfig
from training.models.inverter import ReassignedInverter, ReassignedInverterConfig
from training.models.unet import UNet, UNetConfig

__all__ = [
    "CNN1D",
    "CNN2D",
    "CRN",
    "DCCRN",
    "MODELS",
    "OUTPUTS",
    "CNN1DConfig",
    "CNN2DConfig",
    "CRNConfig",
    "DCCRNConfig",
    "ReassignedInverter",
    "ReassignedInverterConfig",
    "SpecModel",
    "UNet",
    "UNetConfig",
    "build_model",
    "model_class",
]
