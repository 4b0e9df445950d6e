"""Section 5b, probes under distribution shift: the latent mask probe of section 5 and the
supervised CNN on test images changed the way other photos differ (:mod:`facemask_vae.data.shifts`)."""

from __future__ import annotations

from typing import Any

import torch

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.config import ConfigError
from facemask_vae.data.augment import BatchAugment
from facemask_vae.data.shifts import DESCRIPTIONS, SHIFTS, apply_shift
from facemask_vae.evaluation.context import REFERENCE, Context, shared
from facemask_vae.evaluation.probes import latent_probe
from facemask_vae.evaluation.shared import encode_images, test_latents, train_latents

PROBE_NAMES = {"probe": "linear-probe", "probe_aug": "augmented-probe"}  # key -> report words


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


def probe_augment(cfg: Any) -> BatchAugment | None:
    """The augmentation whose copies of the training images also train the ``probe_aug`` probe
    (``probe_augment``: data.augment's options, hflip 0 unless given; null or absent: no such
    probe), checked: one that changes nothing is refused."""
    opts = cfg.get("probe_augment")
    if not opts:
        return None
    example = "e.g. {zoom_out: 0.55, zoom_out_p: 1.0}"
    try:
        aug = BatchAugment(**{"hflip": 0.0, **dict(opts)})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"probe_augment takes data.augment's options, {example}: {exc}") from exc
    if not aug.enabled:
        raise ConfigError(
            f"probe_augment={dict(opts)} changes no image: data.augment's options, {example}; "
            "null turns the augmented probe off"
        )
    return aug


@shared
def augmented_probe(ctx: Context, i: int) -> Any:
    """Run ``i``'s logistic-regression probe fitted on the latents of the probe's training images
    and of one augmented copy of each (``probe_augment``'s options, seeded)."""
    aug = probe_augment(ctx.cfg)
    assert aug is not None, "the augmented probe needs probe_augment options"
    x = ctx.x_train
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed("probe_augment"))
        copies = torch.cat([aug(x[j : j + 512].float().div(255)) for j in range(0, len(x), 512)])
    copies = copies.mul(255).round().clamp(0, 255).to(torch.uint8)
    z = torch.cat([train_latents(ctx, i), encode_images(ctx, ctx.runs[i], copies, "augmented")])
    y = torch.cat([ctx.y_train, ctx.y_train]).numpy()
    return M.fit_probe(z, y, kind="logreg", seed=int(ctx.cfg.seed))


@shared
def shifted_test_images(ctx: Context, name: str) -> torch.Tensor:
    """The test split under shift ``name`` (uint8), seeded by the shift alone, so choosing other
    shifts leaves its numbers as they are."""
    return apply_shift(name, ctx.x_test, ctx.seed("shifts", list(SHIFTS).index(name)))


def section_shifts(ctx: Context) -> None:
    names = shift_names(ctx.cfg)
    if not names:
        return
    ctx.heading(f"Mask probes under distribution shift ({ctx.cfg.split} images, shifted)")
    yte = ctx.y_test.numpy()
    aug = probe_augment(ctx.cfg)
    kinds = ["probe", "probe_aug"] if aug is not None else ["probe"]
    probe_acc: dict[tuple[str, str], list[float]] = {(n, k): [] for n in ctx.names for k in kinds}
    cnn_acc: list[float] = []

    def accuracy(i: int, kind: str, z: torch.Tensor) -> float:
        probe = latent_probe(ctx, i, "logreg") if kind == "probe" else augmented_probe(ctx, i)
        return M.classification_scores(yte, M.probe_probs(probe, z))["accuracy"]

    if aug is not None:
        for i, name in enumerate(ctx.names):
            acc = accuracy(i, "probe_aug", test_latents(ctx, i))
            ctx.put(name, "shift.none.probe_aug", acc, "unshifted: augmented-probe accuracy")
    for shift in names:
        images = shifted_test_images(ctx, shift)
        desc = DESCRIPTIONS[shift]
        for i, name in enumerate(ctx.names):
            z = encode_images(ctx, ctx.runs[i], images, f"{name}: latents, {shift}")
            for kind in kinds:
                acc = accuracy(i, kind, z)
                probe_acc[name, kind].append(acc)
                ctx.put(name, f"shift.{shift}.{kind}", acc, f"{desc}: {PROBE_NAMES[kind]} accuracy")
        acc = M.classification_scores(yte, ctx.cnn_predict(images)[1].numpy())["accuracy"]
        cnn_acc.append(acc)
        ctx.put(REFERENCE, f"shift.{shift}.cnn", acc, f"{desc}: supervised-CNN accuracy")
    for (name, kind), accs in probe_acc.items():
        ctx.put(
            name,
            f"shift.mean.{kind}",
            sum(accs) / len(names),
            f"mean over the {len(names)} shifts: {PROBE_NAMES[kind]} accuracy",
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
        "logistic-regression and CNN accuracies of section 5."
        + (
            f" The augmented probe (probe_aug) is the same logistic regression fitted on those "
            f"latents and on the latents of one augmented copy of each training image "
            f"(probe_augment: {dict(ctx.cfg.probe_augment)}); shift.none is its unshifted accuracy."
            if aug is not None
            else ""
        ),
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
