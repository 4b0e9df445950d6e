"""Section 7, what the U-Net skips carry: per-level KL, active units and the swap test."""

from __future__ import annotations

import torch

from facemask_vae import report as R
from facemask_vae.evaluation.context import Context
from facemask_vae.evaluation.shared import level_active, level_kls, pairs
from facemask_vae.models import Autoencoder


def _skip_mode(model: Autoencoder) -> str:
    return model.config.skip


def swap_shares(
    model: Autoencoder, xa: torch.Tensor, xb: torch.Tensor
) -> tuple[dict[str, float], list[torch.Tensor]]:
    """How much of the change from decode(A) to decode(B) the top latent and the skips carry.

    share_top = MSE(decode(z_B, skips_A), decode(A)) / MSE(decode(B), decode(A)), share_skips the
    same with (z_A, skips_B); each near 1 means that part alone carries the difference. Returns
    the shares and the images [dec A, dec B, top from B, skips from B].
    """
    ca, cb = model.encode_levels(xa), model.encode_levels(xb)
    dec_a = model.decode(ca[0], ca[1:])
    dec_b = model.decode(cb[0], cb[1:])
    top_b = model.decode(cb[0], ca[1:])
    skips_b = model.decode(ca[0], cb[1:])
    base = (dec_b - dec_a).pow(2).mean().clamp(min=1e-12)
    shares = {
        "top": float((top_b - dec_a).pow(2).mean() / base),
        "skips": float((skips_b - dec_a).pow(2).mean() / base),
    }
    return shares, [dec_a, dec_b, top_b, skips_b]


def section_skips(ctx: Context) -> None:
    cfg = ctx.cfg
    models = [
        (i, n, r)
        for i, (n, r) in enumerate(zip(ctx.names, ctx.runs, strict=True))
        if _skip_mode(r.model) != "none"
    ]
    if not models:
        return
    ctx.heading("What the latent carries (U-Net VAEs; level 0 = top, then skips coarse to fine)")
    a_idx, b_idx = pairs(ctx)
    xa, xb = ctx.floats(ctx.x_test[a_idx]), ctx.floats(ctx.x_test[b_idx])
    n_show = min(int(cfg.n_show_pairs), len(a_idx))
    rows = [("A", xa[:n_show].cpu()), ("B", xb[:n_show].cpu())]
    for i, name, run in models:
        kls = level_kls(ctx, i)
        active = level_active(ctx, i)
        for lvl, kl in enumerate(kls):
            ctx.put(name, f"skips.kl_level{lvl}", kl, f"KL level {lvl} (nats/image)")
        total = sum(kls) if kls else 0.0
        if len(kls) > 1 and total > 0:
            ctx.put(name, "skips.kl_top_share", kls[0] / total, "share of the KL in the top latent")
        for lvl, (au, n) in enumerate(active):
            ctx.put(name, f"skips.active_level{lvl}", f"{au}/{n}", f"active units level {lvl}")
        shares, imgs = swap_shares(run.model, xa, xb)
        ctx.put(
            name, "skips.swap_top", shares["top"], "swap: output change carried by the top latent"
        )
        ctx.put(
            name, "skips.swap_skips", shares["skips"], "swap: output change carried by the skips"
        )
        for lab, im in zip(
            ("decode(A)", "decode(B)", "top B + skips A", "top A + skips B"), imgs, strict=True
        ):
            rows.append((f"{name}: {lab}", im[:n_show].cpu()))
    ctx.note(
        "skips",
        "Swap test on the interpolation pairs: share_top = MSE(decode(z_top_B, skips_A), "
        "decode(A)) / MSE(decode(B), decode(A)); share_skips likewise with (z_top_A, skips_B). "
        "A share near 1 means that part alone moves the output from A to B; a model whose skips "
        "carry everything has share_skips ~ 1 and share_top ~ 0. For deterministic skips the "
        "'skips' are the encoder features and there is no per-level KL.",
    )
    R.image_rows(
        rows,
        ctx.figure(
            "skips",
            "swap.png",
            f"Swap test on {n_show} pairs: inputs A and B, then for each U-Net model decode(A), "
            "decode(B), the top latent of B with the skips of A, and the top latent of A with the "
            "skips of B. Whichever swap looks like B is the part that carries the image.",
        ),
    )
