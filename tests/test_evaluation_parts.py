"""The pieces of eval.py that can fail on their own, without a report: the IWAE bound, the swap
test, interpolation pairs, TensorBoard curves and the refusal of NaN samples."""

from __future__ import annotations

import pytest
import torch

from facemask_vae import metrics as M
from facemask_vae.curves import read_curves
from facemask_vae.evaluation import interpolation_pairs, swap_shares
from facemask_vae.models import VAE


def _tiny_unet() -> VAE:
    torch.manual_seed(0)
    m = VAE(image_size=32, widths=[8, 16, 16], latent_dim=8, skip="variational").eval()
    for level in m.decoder.ladder:  # move the posteriors off their priors: non-zero skip KLs
        torch.nn.init.normal_(level.posterior[-1].weight, std=0.05)
    return m


def test_iwae_bound_is_at_least_the_elbo_on_a_tiny_model():
    m = _tiny_unet()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    k = 200
    lw = m.importance_log_weights(x, k, generator=torch.Generator().manual_seed(0))
    assert lw.shape == (k, 4) and torch.isfinite(lw).all()
    assert torch.all(M.iwae_bound(lw) >= lw.mean(0))
    # the mean log-weight estimates the ELBO with every level: compare with the analytic-KL ELBO
    with torch.no_grad():
        elbo = torch.stack(
            [
                -(t.recon + sum(kl.sum(1) for kl in t.kls))
                for t in (m.loss_terms(x) for _ in range(k))
            ]
        )
    se = (lw.std(0) ** 2 / k + elbo.double().std(0) ** 2 / k).sqrt()
    assert torch.all((lw.mean(0) - elbo.double().mean(0)).abs() < 5 * se + 1e-3)
    assert torch.all(M.iwae_bound(lw) > elbo.double().mean(0))  # strictly tighter here


def test_the_swap_test_on_a_model_without_skip_information():
    m = _tiny_unet()
    with torch.no_grad():
        m.to_latent.weight.mul_(1e3)  # at initialisation every image has nearly the same z
        for level in m.decoder.ladder:  # skips now ignore their input: only the top latent matters
            level.project.weight.zero_()
            level.project.bias.zero_()
    xa, xb = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    shares, imgs = swap_shares(m, xa, xb)
    assert shares["top"] == pytest.approx(1.0, abs=1e-4)
    assert shares["skips"] == pytest.approx(0.0, abs=1e-6)
    assert len(imgs) == 4 and imgs[0].shape == xa.shape


def test_interpolation_pairs_join_a_masked_and_an_unmasked_face():
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 0])
    a, b = interpolation_pairs(labels, 10, seed=0)
    assert len(a) == len(b) == 3
    assert torch.all(labels[a] == 1) and torch.all(labels[b] == 0)
    a2, _ = interpolation_pairs(labels, 10, seed=0)
    assert torch.equal(a, a2)


def test_training_curves_are_read_per_epoch(runs):
    curves = read_curves(runs["vae_unet"])
    for q in ("loss", "recon", "kl", "beta"):
        epochs, values = curves[q]["train"]
        assert list(epochs) == [0, 1] and len(values) == 2, q
    assert list(curves["loss"]["val"][0]) == [0, 1]


def test_eval_refuses_a_sample_set_with_nan_images_and_names_it(monkeypatch):
    from types import SimpleNamespace

    from facemask_vae.evaluation import samples

    images = torch.rand(6, 3, 8, 8)
    images[4, 0, 1, 1] = float("nan")
    monkeypatch.setattr(samples, "_draw_all", lambda *a: images)
    ctx = SimpleNamespace(names=["vae_unet"])
    setting = samples.Setting("two_stage_all", 1.0, True, None)
    with pytest.raises(RuntimeError, match=r"vae_unet: .* drew 1 of 6 images with NaN"):
        samples._draw(ctx, 0, object(), setting)
    images[4] = 0.5
    assert samples._draw(ctx, 0, object(), setting) is images
