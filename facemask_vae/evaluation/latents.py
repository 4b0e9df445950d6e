"""Section 3, latent space: t-SNE, k-NN accuracy, silhouette and active units of test latents."""

from __future__ import annotations

import numpy as np

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.evaluation.context import Context
from facemask_vae.evaluation.shared import level_active, test_latents


def section_latent_space(ctx: Context) -> None:
    """t-SNE of the test latents per model; k-NN accuracy and silhouette in latent space."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    cfg = ctx.cfg
    ctx.heading("Latent space (test posterior means)")
    y = ctx.y_test.numpy()
    panels = []
    for i, (name, run) in enumerate(zip(ctx.names, ctx.runs, strict=True)):
        z = test_latents(ctx, i).numpy().astype(np.float64)
        ctx.put(name, "latent.knn", M.knn_accuracy(z, y, k=5), "k-NN accuracy (k=5, leave-one-out)")
        ctx.put(name, "latent.silhouette", M.silhouette(z, y), "silhouette of the two classes")
        if run.model.has_kl:
            au, total = level_active(ctx, i)[0]
            ctx.put(
                name,
                "latent.active_units",
                f"{au}/{total}",
                "active units, top latent (Var > 0.01)",
            )
        if cfg.tsne:
            zz = z
            if z.shape[1] > 50 and len(z) > 50:  # the usual PCA step: faster, same picture
                zz = PCA(50, random_state=int(cfg.seed)).fit_transform(z)
            emb = TSNE(
                n_components=2,
                perplexity=min(30.0, (len(y) - 1) / 3),
                init="pca",
                learning_rate="auto",
                random_state=int(cfg.seed),
            ).fit_transform(zz)
            panels.append((name, emb))
    if panels:
        R.scatter_panels(
            panels,
            y,
            ctx.figure(
                "latent",
                "tsne.png",
                f"t-SNE of the {cfg.split} images' top latents (posterior means for VAEs), one panel "
                "per model, coloured by the true label: separated colours mean the latent encodes "
                "the mask.",
            ),
        )
