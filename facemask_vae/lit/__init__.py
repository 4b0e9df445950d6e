"""Training regimes as thin LightningModules around a generative model (``conf/module/``)."""

from facemask_vae.lit.adversarial import AdversarialModule
from facemask_vae.lit.module import TrainingModule

__all__ = ["AdversarialModule", "TrainingModule"]
