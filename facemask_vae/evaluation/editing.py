"""Section 8, editing: put a mask on the test faces without one and take it off those with one
(``run.edit``), and draw faces of one class (``run.sample(n, mask=...)``); measured by the
domain CNN (does the edit flip the class?), on the upper face (is the rest of the face kept?)
and in the CNN's and Inception's features (do the results look like real faces of that class?),
beside a naive baseline: the other class's mean lower face pasted on.
"""

from __future__ import annotations

from typing import Any

import torch

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.config import ConfigError
from facemask_vae.evaluation.conditional import conditional_samples
from facemask_vae.evaluation.context import REFERENCE, Context, batches
from facemask_vae.evaluation.sample_fid import SampleFid
from facemask_vae.sampling.attribute import KEEP, class_mean_images, upper_face_rows
from facemask_vae.sampling.conditional import CONFIDENCE, check_confidence

#: (direction, target label, edit's ``mask``): mask on for faces without one, off for the rest
DIRECTIONS = (("on", 1, True), ("off", 0, False))
#: the edits measured on a model with latents at several levels, (levels, region, keep); the
#: first is the default edit, the headline; a one-level model has only that one
VARIANTS = (("all", "lower", KEEP), ("all", "lower", 1.0), ("all", "all", 1.0), ("top", "all", 1.0))
#: a one-level model's edit: its one code is a vector, where region and keep do not act
ONE_LEVEL = ("all", "lower", None)
#: the plain mean shift: at strength 0, the reconstruction
PLAIN = ("all", "lower", 1.0)
#: what tells the editing table's rows apart, beside the model
SETTING = ("strength", "levels", "region", "keep")


def paste_lower_face(images: torch.Tensor, mean_image: torch.Tensor, rows: int) -> torch.Tensor:
    """The baseline edit: images (N x 3 x H x W in [0, 1]) below row ``rows`` replaced by the
    target class's mean image."""
    out = images.clone()
    out[..., rows:, :] = mean_image[..., rows:, :]
    return out


def class_means(ctx: Context) -> list[torch.Tensor]:
    """The mean training image of each class (0: without a mask, 1: with), 3 x H x W in [0, 1]."""
    train = ctx.dm.dataset("train")
    return class_mean_images(train.images, train.labels, ctx.dm.to_float)


def check_config(cfg: Any) -> None:
    """Refuse bad editing options before anything is loaded, with the fix."""
    strengths = cfg.get("edit_strengths") or []
    if 1.0 not in [float(s) for s in strengths] or min(float(s) for s in strengths) < 0:
        raise ConfigError(
            f"edit_strengths must be numbers >= 0 and include 1.0 (the headline edit), got "
            f"{list(strengths)}; e.g. edit_strengths=[1.0,2.0]"
        )
    conf = cfg.get("edit_confidence")
    if conf is not None:
        try:
            check_confidence(conf)
        except ValueError as e:
            raise ConfigError(f"edit_confidence: {e} (null: run.sample's {CONFIDENCE})") from e
    for key in ("edit_images", "edit_samples"):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {value}")


def _pick(ctx: Context, label: int) -> torch.Tensor:
    """A seeded subset of the test images of one class (at most ``edit_images``), indices."""
    idx = (ctx.y_test == label).nonzero().flatten()
    g = ctx.rng("editing")
    keep = torch.randperm(len(idx), generator=g)[: int(ctx.cfg.edit_images)]
    return idx[keep.sort().values]


def _scores(
    ctx: Context, orig: torch.Tensor, edited: torch.Tensor, target: int, rows: int
) -> dict[str, float]:
    """Flip rate, upper-face PSNR/SSIM, domain FD to the real test images of the target class."""
    feats, probs = ctx.cnn_predict(edited)
    up_o, up_e = orig[..., :rows, :], edited[..., :rows, :]
    real = ctx.cnn_test_feats[ctx.y_test == target]
    return {
        "flip": float(((probs > 0.5).long() == target).float().mean()),
        "psnr_upper": float(M.psnr_per_image(up_e, up_o).mean()),
        "ssim_upper": float(M.ssim_per_image(up_e, up_o).mean()),
        "fd_cnn": float(M.frechet_distance(feats, real)),
    }


def _edit(run: Any, x: torch.Tensor, mask: bool, strength: float, variant: tuple, bs: int):
    levels, region, keep = variant
    keep = KEEP if keep is None else keep  # None: a one-level model, where keep does not act
    return torch.cat(
        [
            run.edit(x[s], mask, strength, levels=levels, region=region, keep=keep).cpu()
            for s in batches(len(x), bs)
        ]
    )


def section_editing(ctx: Context) -> None:
    """Every model's edits at every strength (and, for U-Net VAEs, the plain mean shift, over the
    whole face and of the top latent alone) and its class-conditional samples, beside the
    pasted-mean baseline."""
    cfg = ctx.cfg
    means = class_means(ctx)
    rows, _ = upper_face_rows(means[1], means[0])
    picks = {d: _pick(ctx, 1 - target) for d, target, _ in DIRECTIONS}
    originals = {d: ctx.dm.to_float(ctx.x_test[picks[d]]).cpu() for d in picks}
    strengths = [float(s) for s in cfg.edit_strengths]
    fid = SampleFid.create(ctx, "editing") if cfg.get("edit_fid") else None
    refs = {}
    if fid is not None:
        for label in (0, 1):
            chosen = ctx.y_test == label
            refs[label] = fid.real_features(
                ctx.x_test[chosen], ctx.y_test[chosen], f"class {label}"
            )
    ctx.heading(
        f"Editing ({', '.join(f'{len(p)} faces {d}' for d, p in picks.items())}; "
        f"strength 1; upper face: rows 0-{rows - 1})"
    )
    table: list[dict[str, Any]] = []
    shown: list[tuple[str, torch.Tensor]] = [
        ("test faces", torch.cat([originals[d][:4] for d in picks]))
    ]

    def record(col: str, setting: dict[str, Any], edited: dict[str, torch.Tensor]) -> None:
        row = {"model": col, **setting}
        edit = (setting["levels"], setting["region"], setting["keep"])
        headline = setting["strength"] in (1.0, None) and edit in (
            VARIANTS[0],
            ONE_LEVEL,
            (None,) * 3,
        )
        for d, target, _ in DIRECTIONS:
            s = _scores(ctx, originals[d], edited[d], target, rows)
            if fid is not None and headline:  # FID on the headline edits only: it is slow
                s["fid"] = fid(edited[d], f"{col}: mask {d}", ref=refs[target])["fid"]
            row |= {f"{k}_{d}": v for k, v in s.items()}
        table.append(row)
        if headline:
            for k, v in row.items():
                if k not in ("model", *SETTING):
                    ctx.put(col, f"edit.{k}", v, _label(k))

    for i, (name, run) in enumerate(zip(ctx.names, ctx.runs, strict=True)):
        # region matters where codes are spatial; one level has only the default edit
        variants = VARIANTS if run.attribute.spatial else (ONE_LEVEL,)
        recon = {d: _edit(run, originals[d], True, 0.0, PLAIN, ctx.bs) for d in picks}
        ctx.put(
            name,
            "edit.psnr_upper_recon",
            float(
                torch.cat(
                    [
                        M.psnr_per_image(recon[d][..., :rows, :], originals[d][..., :rows, :])
                        for d in picks
                    ]
                ).mean()
            ),
            "upper-face PSNR of the plain reconstruction (what an edit cannot beat)",
        )
        for variant in variants:
            for strength in strengths:
                edited = {
                    d: _edit(run, originals[d], mask, strength, variant, ctx.bs)
                    for d, _, mask in DIRECTIONS
                }
                setting = dict(zip(SETTING, (strength, *variant), strict=True))
                record(name, setting, edited)
                if variant in (VARIANTS[0], ONE_LEVEL) or strength == 1.0:
                    shown.append(
                        (
                            f"{name}: {_variant_name(*variant)}, x{strength:g}",
                            torch.cat([edited[d][:4] for d in picks]),
                        )
                    )
        conditional_samples(ctx, i, fid, refs)
    pasted = {d: paste_lower_face(originals[d], means[target], rows) for d, target, _ in DIRECTIONS}
    record(REFERENCE, dict.fromkeys(SETTING), pasted)
    shown.append(("pasted mean lower face", torch.cat([pasted[d][:4] for d in picks])))
    ctx.tables["editing"] = table
    _report(ctx, table, shown, rows)


LABELS = {
    "flip": "share the CNN calls the target class",
    "psnr_upper": "upper-face PSNR to the original (dB)",
    "ssim_upper": "upper-face SSIM to the original",
    "fd_cnn": "domain FD to the target class's test images",
    "fid": "FID to the target class's test images",
}


def _variant_name(levels: str | None, region: str | None, keep: float | None) -> str:
    """How an edit is named in the report: which levels, where on the face, how much of the
    face's own code is kept there."""
    if levels is None:
        return "paste"
    if levels == "top":
        return "top latent"
    where = {"lower": ", below the upper face", "all": ", whole face"}[region]
    return "every level" + where + ("" if keep in (1, None) else f", keeping {keep:g}")


def _label(key: str) -> str:
    what, d = key.rsplit("_", 1)
    return f"mask {d} (strength 1, the default edit): {LABELS[what]}"


def _report(ctx: Context, table: list[dict[str, Any]], shown, rows: int) -> None:
    R.image_rows(
        shown,
        ctx.figure(
            "editing",
            "editing.png",
            "Edits: four test faces without a mask (left) get one, four with a mask (right) lose "
            "it. Each model row moves the codes of every level below the upper face (or over "
            "the whole face, or the top latent only) by the class-mean difference times the "
            "strength, keeping the stated share of each face's own offset from its class's mean "
            f"there; the last row pastes the other class's mean image below row {rows}.",
        ),
    )
    keys = list(dict.fromkeys(k for r in table for k in r if k not in ("model", *SETTING)))
    head = "| model | edit | strength | " + " | ".join(keys) + " |"
    lines = [head, "|---|---|---:|" + "---:|" * len(keys)]
    for r in table:
        edit = _variant_name(r["levels"], r["region"], r["keep"])
        cells = [r["model"], edit, r["strength"], *(r.get(k) for k in keys)]
        lines.append("| " + " | ".join(R.fmt(c) for c in cells) + " |")
    ctx.note(
        "editing",
        f"The upper face is rows 0-{rows - 1}, the rows where the mean training "
        "images with and without a mask differ least (the cut of a two-step least-squares fit to "
        "their per-row mean absolute difference). Every edit (metrics.json `tables.editing`); the "
        "reference column is the pasted baseline. Class-conditional samples keep the run's sampler's "
        "draws its attribute's probe assigns to the class with confidence "
        f"{ctx.cfg.get('edit_confidence') or CONFIDENCE:g} (P above it for a mask, below one "
        "minus it without), decoded with the sampling BN statistics of the run's sampler."
        "\n\n" + "\n".join(lines),
    )
