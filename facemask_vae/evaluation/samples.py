"""Section 2, random samples: every model from every sampler (its N(0, I) prior, or a Gaussian,
a Gaussian mixture or a second VAE fitted to its training latents: the top latent's, or with
``*_all`` the codes of every level at once) at every temperature, normalised with BN statistics
for sampling; their distance to the test images in domain-CNN and Inception features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.evaluation.context import REFERENCE, Context, batches
from facemask_vae.evaluation.sample_fid import SampleFid
from facemask_vae.evaluation.sample_settings import (
    BEST_BY,
    RUN,
    Setting,
    best_by,
    fid_settings,
    model_settings,
    settings,
    two_stage_note,
)
from facemask_vae.evaluation.shared import sampler_codes_all, sampler_latents
from facemask_vae.run.sampler import RunSampler
from facemask_vae.sampling import LatentSampler, make_sampler, parse_name


@dataclass
class SampleSet:
    """One drawn set: its setting, images (n x 3 x S x S in [0, 1], on the CPU), its numbers,
    and its row of the all-settings table (which later numbers, e.g. the best set's FID, join)."""

    setting: Setting
    images: torch.Tensor
    values: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)


def fitted_samplers(ctx: Context, i: int, kinds: list[str]) -> dict[str, LatentSampler]:
    """Run ``i``'s samplers, the fitted ones fitted to its training latents (the ``*_all`` ones
    to the codes of every level; only for models with skip levels)."""
    k, seed = int(ctx.cfg.gmm_components), int(ctx.cfg.seed)
    two_stage = dict(ctx.cfg.get("two_stage") or {})
    out = {}
    for s in kinds:
        if s == RUN:
            out[s] = run_sampler(ctx, i).sampler
            continue
        kind, all_levels = parse_name(s)
        if all_levels:
            z = sampler_codes_all(ctx, i)
        else:
            z = sampler_latents(ctx, i) if kind != "prior" else None
        dim = ctx.runs[i].model.latent_dim if z is None else z.shape[1]
        out[s] = make_sampler(s, dim, z, k, seed, two_stage)
    return out


def run_sampler(ctx: Context, i: int) -> RunSampler:
    """Run ``i``'s own sampler as saved (fitted and saved first, once, if the run has none)."""
    run = ctx.runs[i]
    if run.run_sampler is None:
        tqdm.write(f"[eval] {ctx.names[i]}: no saved sampler: fitting one")
        run.fit_sampler()
    assert run.run_sampler is not None
    return run.run_sampler


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
    model, g, n = ctx.runs[i].model, ctx.rng("samples", ctx.device), int(ctx.cfg.n_samples)
    # the run's own sampler draws at its saved temperature, scaled by the setting's
    t = s.temperature * (run_sampler(ctx, i).temperature if s.sampler == RUN else 1.0)
    return torch.cat(
        [
            model.sample(
                b.stop - b.start,
                generator=g,
                temperature=t,
                sampler=sampler,
                sampling_bn=s.sampling_bn,
                skip_temperature=s.skip_temperature,
                bn_batches=int(ctx.cfg.get("sampling_bn_batches", 20)),
            ).cpu()
            for b in batches(n, ctx.bs, f"{ctx.names[i]}: {s}")
        ]
    )


def _cnn_metrics(ctx: Context, images: torch.Tensor) -> dict[str, float]:
    feats, probs = ctx.cnn_predict(images)
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
        run_all = None
        if any(s.sampler == RUN for s in grid):
            own = run_sampler(ctx, i)
            run_all = own.sampler.all_levels
            ctx.put(
                name,
                "samples.run_sampler",
                f"{own.sampler.name}, T {own.temperature:g}",
                "the run's own sampler (sampler.pt) and its temperature (run, T t: t times it)",
            )
        model_grid = model_settings(grid, len(ctx.runs[i].model.latent_sizes) > 1, run_all)
        samplers = fitted_samplers(ctx, i, sorted({s.sampler for s in model_grid}))
        best: SampleSet | None = None
        head: SampleSet | None = None
        for s in model_grid:
            images = _draw(ctx, i, samplers[s.sampler], s)
            cur = SampleSet(s, images, _cnn_metrics(ctx, images))
            if fid is not None and ("all" in which or (s == headline and "headline" in which)):
                cur.values |= fid(images, f"{name}: {s}")
            cur.row = {"model": name, **vars(s), **cur.values}
            rows.append(cur.row)
            if s == headline:
                head = cur
            if best is None or cur.values[by] < best.values[by]:
                best = cur
        assert head is not None and best is not None
        if fid is not None and "best" in which and "fid" not in best.values:
            best.values |= fid(best.images, f"{name}: {best.setting}")
            best.row |= best.values
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
            f"(gmm: {int(cfg.gmm_components)} full-covariance components){two_stage_note(cfg)}.",
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
