"""Section 5, probes: mask classifiers on latents, beside pixel and supervised-CNN references."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from tqdm.auto import tqdm

from facemask_vae import metrics as M
from facemask_vae.classifier import fingerprint
from facemask_vae.evaluation.context import REFERENCE, Context, shared
from facemask_vae.evaluation.shared import test_latents, train_latents


def section_probes(ctx: Context) -> None:
    """Logistic regression and an MLP on training latents, scored on test latents, beside the same
    probes on raw pixels and the supervised CNN (the ceiling)."""
    cfg = ctx.cfg
    ctx.heading(
        f"Mask classification from latents ({len(ctx.y_train)} training images -> {cfg.split})"
    )
    yte = ctx.y_test.numpy()
    label = {"accuracy": "accuracy", "f1": "F1", "roc_auc": "ROC-AUC"}
    for i, name in enumerate(ctx.names):
        probes = {kind: latent_probe(ctx, i, kind) for kind in ("logreg", "mlp")}
        zte = test_latents(ctx, i)
        for kind, desc in (("logreg", "logistic regression"), ("mlp", "MLP (128 hidden)")):
            probs = M.probe_probs(probes[kind], zte)
            for m, v in M.classification_scores(yte, probs).items():
                ctx.put(name, f"probe.{kind}.{m}", v, f"{desc}: {label[m]}")
    # references: the same probes on raw pixels (cached: they depend on the data only), and
    # the supervised CNN
    for kind, scores in pixel_probes(ctx).items():
        for m, v in scores.items():
            ctx.put(REFERENCE, f"probe.{kind}.{m}", v, "")
    for m, v in M.classification_scores(yte, ctx.cnn_test_probs.numpy()).items():
        ctx.put(REFERENCE, f"probe.cnn.{m}", v, f"supervised CNN (ceiling): {label[m]}")
    ctx.note(
        "probes",
        "In the reference column the logistic-regression and MLP rows are the same probes fitted "
        "on raw pixels (the same training images) instead of latents, and the supervised-CNN rows "
        "are the domain CNN itself, trained end to end on the whole training split.",
    )


@shared
def latent_probe(ctx: Context, i: int, kind: str = "logreg") -> Any:
    """Run ``i``'s probe of this section (``logreg`` or ``mlp``), fitted on its training latents,
    for scoring other latents with :func:`facemask_vae.metrics.probe_probs`."""
    return M.fit_probe(
        train_latents(ctx, i), ctx.y_train.numpy(), kind=kind, seed=int(ctx.cfg.seed)
    )


PIXEL_PROBE_VERSION = 1


def pixel_probes(ctx: Context) -> dict[str, dict[str, float]]:
    """The latent probes fitted on raw pixels instead; cached by the data's fingerprints."""
    from facemask_vae.classifier import cache_dir

    seed = int(ctx.cfg.seed)
    key = "-".join(
        [
            f"pixel_probes-v{PIXEL_PROBE_VERSION}-s{seed}",
            fingerprint(ctx.x_train, ctx.y_train),
            fingerprint(ctx.x_test, ctx.y_test),
        ]
    )
    path = cache_dir(ctx.cfg.get("cache_dir")) / f"{key}.json"
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            return json.loads(path.read_text())
    xtr = ctx.x_train.flatten(1).float().div(255).numpy()
    xte = ctx.x_test.flatten(1).float().div(255).numpy()
    ytr, yte = ctx.y_train.numpy(), ctx.y_test.numpy()
    out = {
        kind: M.probe_scores(xtr, ytr, xte, yte, kind=kind, seed=seed)
        for kind in tqdm(("logreg", "mlp"), desc="pixel probes", leave=False, disable=None)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out
