"""Generating from a trained model: latent samplers and BatchNorm statistics for sampling."""

from facemask_vae.sampling.batchnorm import SamplingStats, estimate_bn_stats
from facemask_vae.sampling.samplers import (
    SAMPLERS,
    GaussianMixtureSampler,
    LatentSampler,
    PriorSampler,
    fit_gaussian,
    fit_gmm,
    make_sampler,
)

__all__ = [
    "SAMPLERS",
    "GaussianMixtureSampler",
    "LatentSampler",
    "PriorSampler",
    "SamplingStats",
    "estimate_bn_stats",
    "fit_gaussian",
    "fit_gmm",
    "make_sampler",
]
