"""Section 6, training curves: final and best losses, KL and beta from TensorBoard events."""

from __future__ import annotations

import numpy as np

from facemask_vae import report as R
from facemask_vae.curves import read_curves
from facemask_vae.evaluation.context import Context


def section_training(ctx: Context) -> None:
    ctx.heading("Training (from the runs' TensorBoard events)")
    all_curves = {}
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        if run.run_dir is None:
            continue
        curves = read_curves(run.run_dir)
        if not curves:
            continue
        all_curves[name] = curves
        loss = curves.get("loss", {})
        if "train" in loss:
            ctx.put(name, "train.epochs", len(loss["train"][1]), "epochs trained")
            ctx.put(
                name, "train.train_loss", loss["train"][1][-1], "final training loss (nats/image)"
            )
        if "val" in loss:
            ctx.put(
                name, "train.val_loss", loss["val"][1][-1], "final validation loss (nats/image)"
            )
            ctx.put(
                name, "train.best_val_loss", float(np.min(loss["val"][1])), "best validation loss"
            )
        if "val" in curves.get("kl", {}):
            ctx.put(
                name, "train.val_kl", curves["kl"]["val"][1][-1], "final validation KL (nats/image)"
            )
        if "train" in curves.get("beta", {}):
            ctx.put(name, "train.beta", curves["beta"]["train"][1][-1], "final beta")
    if all_curves:
        R.training_curves(
            all_curves,
            ctx.figure(
                "training",
                "training_curves.png",
                "Training curves per epoch from each run's TensorBoard events: loss, reconstruction "
                "NLL, KL and beta; solid = training (epoch means), dashed = validation. The loss "
                "includes beta, so it differs from the ELBO while beta < 1.",
            ),
        )
    else:
        ctx.note("training", "No TensorBoard event files were found in the run directories.")
