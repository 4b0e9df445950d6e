"""Section 5b, probes under distribution shift: the latent mask probe of section 5 and the
supervised CNN on test images changed the way other photos differ (:mod:`facemask_vae.data.shifts`)."""

from __future__ import annotations

from typing import Any

import torch

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.config import ConfigError
from facemask_vae.data.shifts import DESCRIPTIONS, SHIFTS, apply_shift
from facemask_vae.evaluation.context import REFERENCE, Context, _cnn_predict
from facemask_vae.evaluation.probes import latent_probe
from facemask_vae.evaluation.shared import _cached, _encode

SEED_OFFSET = 17  # the shifts' draws: seed + 17 + the shift's place in SHIFTS


def shift_names(cfg: Any) -> list[str]:
    """The configured shifts (``shifts``; absent or [] turns the section off), checked."""
    names = cfg.get("shifts") or []
    if isinstance(names, str):
        names = [names]
    names = [str(n) for n in names]
    unknown = [n for n in names if n not in SHIFTS]
    if unknown:
        raise ConfigError(
            f"unknown shifts {unknown}: choose from {', '.join(SHIFTS)} (shifts=[] turns them off)"
        )
    return names


def shifted_test_images(ctx: Context, name: str) -> torch.Tensor:
    """The test split under shift ``name`` (uint8), seeded by the shift alone, so choosing other
    shifts leaves its numbers as they are; cached."""
    seed = int(ctx.cfg.seed) + SEED_OFFSET + list(SHIFTS).index(name)
    return _cached(ctx, ("data", f"shift_{name}"), lambda: apply_shift(name, ctx.x_test, seed))


def section_shifts(ctx: Context) -> None:
    names = shift_names(ctx.cfg)
    if not names:
        return
    ctx.heading(f"Mask probes under distribution shift ({ctx.cfg.split} images, shifted)")
    yte = ctx.y_test.numpy()
    probe_acc: dict[str, list[float]] = {n: [] for n in ctx.names}
    cnn_acc: list[float] = []
    for shift in names:
        images = shifted_test_images(ctx, shift)
        desc = DESCRIPTIONS[shift]
        for i, name in enumerate(ctx.names):
            z = _encode(ctx, ctx.runs[i], images, f"{name}: latents, {shift}")
            probs = M.probe_probs(latent_probe(ctx, i, "logreg"), z)
            acc = M.classification_scores(yte, probs)["accuracy"]
            probe_acc[name].append(acc)
            ctx.put(name, f"shift.{shift}.probe", acc, f"{desc}: linear-probe accuracy")
        acc = M.classification_scores(yte, _cnn_predict(ctx, images)[1].numpy())["accuracy"]
        cnn_acc.append(acc)
        ctx.put(REFERENCE, f"shift.{shift}.cnn", acc, f"{desc}: supervised-CNN accuracy")
    for name in ctx.names:
        ctx.put(
            name,
            "shift.mean.probe",
            sum(probe_acc[name]) / len(names),
            f"mean over the {len(names)} shifts: linear-probe accuracy",
        )
    ctx.put(
        REFERENCE,
        "shift.mean.cnn",
        sum(cnn_acc) / len(names),
        f"mean over the {len(names)} shifts: supervised-CNN accuracy",
    )
    ctx.note(
        "shifts",
        "Each shift changes every test image the way photos from elsewhere differ from the tight, "
        "centred Face Mask 12K crops (facemask_vae/data/shifts.py, seeded): "
        + "; ".join(DESCRIPTIONS[s] for s in names)
        + ". A model's number is the logistic-regression probe of section 5, fitted on latents of "
        "the unshifted training images, scored on the latents of the shifted test images; the "
        "reference column is the domain CNN on the shifted images. Compare with the unshifted "
        "logistic-regression and CNN accuracies of section 5.",
    )
    n_show = min(int(ctx.cfg.n_show), len(ctx.y_test))
    floats = ctx.dm.to_float
    rows = [("original", floats(ctx.x_test[:n_show]))]
    rows += [(s, floats(shifted_test_images(ctx, s)[:n_show])) for s in names]
    R.image_rows(
        rows,
        ctx.figure(
            "shifts",
            "shifts.png",
            f"The first {n_show} {ctx.cfg.split} images, then the same images under each shift "
            "the probes are scored on.",
        ),
    )
