"""The "Models" table rows: what is compared (class, skips, annealing, size, epoch)."""

from __future__ import annotations

from omegaconf import OmegaConf

from facemask_vae.evaluation.context import Context


def section_models(ctx: Context) -> None:
    ctx.heading("Models")
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        mc = run.model.config
        anneal = None
        if run.model.has_kl and run.config is not None:
            anneal = OmegaConf.select(run.config, "anneal.name", default=None)
        ctx.put(name, "model.class", type(run.model).__name__, "model class")
        ctx.put(name, "model.skip", mc.skip, "U-Net skips")
        posterior = mc.skip_posterior if mc.skip == "variational" else "–"
        ctx.put(name, "model.skip_posterior", posterior, "skip posterior (variational skips)")
        ctx.put(name, "model.anneal", anneal or "–", "KL annealing schedule")
        ctx.put(name, "model.latent_dim", int(mc.latent_dim), "latent dimensions (top)")
        ctx.put(name, "model.params", sum(p.numel() for p in run.model.parameters()), "parameters")
        ctx.put(name, "model.epoch", run.epoch, "checkpoint epoch")
