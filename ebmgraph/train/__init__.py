"""Training: the contrastive family (§4.3, Table 1, eq. 6–9), the regularized family
(§4.5: VICReg, Barlow Twins, latent information limits, amortized inference) and one
:class:`Trainer` (progress, metrics, collapse monitors, checkpoints, resume, torchrun)."""
from .data import Dataset, digits, digits_views, get_dataset, load_npz, off_manifold, pendulum, rings, spirals, two_moons
from .losses_contrastive import Contrastive, EnergyLoss, LossOut, contrastive
from .monitors import collapse_report, effective_rank, energy_gap, spread
from .trainer import Trainer
from .values import training_free_energy, values

try:  # the regularized family and the demo (later in this package's build order)
    from .losses_regularized import Amortized, Regularized, barlow_terms, vicreg_terms
    from .report import demo_jepa_vicreg, linear_probe
except ModuleNotFoundError as _e:  # pragma: no cover
    if not (_e.name or "").startswith("ebmgraph.train"):
        raise

__all__ = [
    "Amortized", "Contrastive", "Dataset", "EnergyLoss", "LossOut", "Regularized", "Trainer", "barlow_terms",
    "collapse_report", "contrastive", "demo_jepa_vicreg", "digits", "digits_views", "effective_rank", "energy_gap",
    "training_free_energy", "get_dataset", "linear_probe", "load_npz", "off_manifold", "pendulum", "rings", "spirals",
    "spread", "two_moons", "values", "vicreg_terms",
]
