"""The names of the metrics training logs: defined here once, read by callbacks, curves,
checkpoint monitors (configs use the ``${metric:...}`` and ``${monitor:...}`` resolvers), eval and
the scripts. A metric is ``<stage>/<name>``; what Lightning logs both per step and per epoch gets
its ``_epoch`` suffix per epoch from :func:`per_epoch`.
"""

from __future__ import annotations

TRAIN, VAL, TEST = "train", "val", "test"
STAGES = (TRAIN, VAL, TEST)

LOSS = "loss"  # the objective: reconstruction NLL + beta x KL (free bits, balancing), nats/image
RECON = "recon"  # reconstruction NLL, nats/image
KL = "kl"  # KL summed over every latent level, nats/image
ELBO = "elbo"  # -(recon + kl): the true ELBO, whatever beta is
BETA = "beta"
PSNR = "psnr"
SSIM = "ssim"
ACTIVE_UNITS = "active_units"
FOOL_LATENT = "fool_latent"
FOOL_IMAGE = "fool_image"


def key(stage: str, name: str) -> str:
    """``<stage>/<name>``, e.g. ``key(VAL, ELBO) == "val/elbo"``."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return f"{stage}/{name}"


def kl_level(level: int) -> str:
    """The KL of one latent level (0 = the top latent, then the skips from coarse to fine)."""
    return f"kl_level{int(level)}"


def critic(name: str, what: str) -> str:
    """A critic's ``loss`` or ``acc`` (``name``: ``latent`` or ``image``)."""
    return f"critic_{name}_{what}"


def per_epoch(metric: str) -> str:
    """The tag Lightning gives a metric logged with on_step and on_epoch, for each epoch."""
    return f"{metric}_epoch"


VAL_LOSS, VAL_ELBO = key(VAL, LOSS), key(VAL, ELBO)


def monitor(variational: bool) -> tuple[str, str]:
    """(metric, mode) that picks a run's best checkpoint: the validation ELBO for models with a
    KL, the validation loss for the AE (its only objective)."""
    return (VAL_ELBO, "max") if variational else (VAL_LOSS, "min")


#: the per-epoch training curves eval reads from TensorBoard: {quantity: {stage: tag}}
CURVE_TAGS = {
    LOSS: {TRAIN: per_epoch(key(TRAIN, LOSS)), VAL: key(VAL, LOSS)},
    RECON: {TRAIN: per_epoch(key(TRAIN, RECON)), VAL: key(VAL, RECON)},
    KL: {TRAIN: per_epoch(key(TRAIN, KL)), VAL: key(VAL, KL)},
    BETA: {TRAIN: per_epoch(key(TRAIN, BETA))},  # the schedule's value while training
}
