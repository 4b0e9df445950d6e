"""Generating from a trained model: latent samplers and BatchNorm statistics for sampling."""

from facemask_vae.sampling.batchnorm import SamplingStats, estimate_bn_stats
from facemask_vae.sampling.factory import (
    SAMPLERS,
    load_sampler,
    make_sampler,
    parse_name,
    sampler_from_state,
    save_sampler,
)
from facemask_vae.sampling.samplers import (
    GaussianMixtureSampler,
    LatentSampler,
    PriorSampler,
    fit_gaussian,
    fit_gmm,
)
from facemask_vae.sampling.two_stage import TwoStageSampler, fit_two_stage

__all__ = [
    "SAMPLERS",
    "GaussianMixtureSampler",
    "LatentSampler",
    "PriorSampler",
    "SamplingStats",
    "TwoStageSampler",
    "estimate_bn_stats",
    "fit_gaussian",
    "fit_gmm",
    "fit_two_stage",
    "load_sampler",
    "make_sampler",
    "parse_name",
    "sampler_from_state",
    "save_sampler",
]
