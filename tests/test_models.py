"""Model shapes, the ELBO's bookkeeping, and what each skip mode does when sampling."""

import pytest
import torch

from facemask_vae.lit import TrainingModule
from facemask_vae.models import AE, VAE
from facemask_vae.models.layers import ConvBlock

SMALL = {"widths": [8, 16, 16], "latent_dim": 8}
KINDS = [
    ("ae", AE, {}),
    ("vae", VAE, {"skip": "none"}),
    ("unet_var", VAE, {"skip": "variational"}),
    ("unet_var_conv", VAE, {"skip": "variational", "skip_posterior": "conv"}),
    ("unet_det", VAE, {"skip": "deterministic", "skip_dropout": 0.5}),
]


def _x(n: int, size: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize(("name", "cls", "kw"), KINDS, ids=[k[0] for k in KINDS])
def test_shapes_of_every_model_and_skip_mode(name, cls, kw, size):
    m = cls(image_size=size, **SMALL, **kw)
    x = _x(4, size)
    terms = m.loss_terms(x)
    assert terms.recon.shape == (4,) and terms.out.shape == x.shape and terms.mu.shape == (4, 8)
    assert m.encode(x).shape == (4, 8)
    assert m.decode(torch.randn(3, 8)).shape == (3, 3, size, size)
    rec = m.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    assert m.sample(5).shape == (5, 3, size, size)
    for mode in ("linear", "slerp"):
        path = m.interpolate(x[:2], x[2:], steps=6, mode=mode)
        assert path.shape == (2, 6, 3, size, size)
    n_levels = 1 + 3 if kw.get("skip") == "variational" else (1 if cls is VAE else 0)
    assert len(terms.kls) == n_levels


def test_interpolation_endpoints_are_the_reconstructions():
    m = VAE(image_size=32, **SMALL, skip="variational")
    x = _x(4, 32)
    path = m.interpolate(x[:2], x[2:], steps=5)
    rec = m.reconstruct(x)
    assert torch.allclose(path[:, 0], rec[:2], atol=1e-5)
    assert torch.allclose(path[:, -1], rec[2:], atol=1e-5)


def test_variational_unet_samples_from_priors_without_any_encoder_input(monkeypatch):
    m = VAE(image_size=32, **SMALL, skip="variational")

    def no_encoder(*a, **k):
        raise AssertionError("sampling must not call the encoder")

    monkeypatch.setattr(m.encoder, "forward", no_encoder)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = m.sample(4, generator=g1), m.sample(4, generator=g2)
    assert torch.equal(a, b)  # the generator drives every level
    c = m.sample(4, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, c)
    # the skip latents are drawn too: temperature 0 on the skips changes the output
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    means = m.decoder(z, sample_skips=False).out
    drawn = m.decoder(z, generator=torch.Generator().manual_seed(4)).out
    assert not torch.allclose(means, drawn)


def test_deterministic_skips_at_dropout_one_equal_the_no_skip_decoder():
    torch.manual_seed(0)
    m = VAE(image_size=32, **SMALL, skip="deterministic", skip_dropout=1.0, norm="group")
    x = _x(4, 32)
    m.train()
    feats, mu, _ = m.posterior(x)
    with_dropped_skips = m.decoder(mu, feats=feats).out
    no_skips = m.decoder(mu).out  # generation path: skips zeroed
    assert torch.allclose(with_dropped_skips, no_skips, atol=1e-6)
    m.decoder.skip_dropout = 0.0
    assert not torch.allclose(m.decoder(mu, feats=feats).out, no_skips)


def test_loss_is_recon_plus_beta_times_kl_and_elbo_is_unweighted():
    torch.manual_seed(0)
    m = TrainingModule(VAE(image_size=32, **SMALL, skip="variational"))
    logged = {}
    m.log_dict = lambda d, **kw: logged.update(
        {k: float(torch.as_tensor(v).detach()) for k, v in d.items()}
    )
    m.beta = 0.25
    batch = (_x(4, 32), torch.zeros(4, dtype=torch.long))
    m.model_step(batch, "val")
    assert logged["val/loss"] == pytest.approx(
        logged["val/recon"] + 0.25 * logged["val/kl"], rel=1e-5
    )
    assert logged["val/elbo"] == pytest.approx(-(logged["val/recon"] + logged["val/kl"]), rel=1e-5)
    levels = [v for k, v in logged.items() if k.startswith("val/kl_level")]
    assert len(levels) == 4 and sum(levels) == pytest.approx(logged["val/kl"], rel=1e-5)
    assert logged["val/kl"] > 0


def test_logged_ssim_is_float32_under_bf16_autocast():
    """Autocast would run SSIM's Gaussian filter in bf16 and move it by a few hundredths."""
    from dataclasses import replace

    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4, generator=gen), size=32)
    x = smooth.clamp(0.05, 0.95)
    recon = (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0.01, 0.99)
    model = VAE(image_size=32, **SMALL, skip="variational")
    real_terms = model.loss_terms
    model.loss_terms = lambda x: replace(real_terms(x), out=torch.logit(recon))
    m = TrainingModule(model)
    logged = {}
    m.log_dict = lambda d, **kw: logged.update(d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m.model_step((x, torch.zeros(8, dtype=torch.long)), "val")
    expected = ssim(recon, x, data_range=1.0)
    assert float(logged["val/ssim"]) == pytest.approx(float(expected), abs=1e-4)


def test_training_steps_log_psnr_but_leave_the_costly_ssim_to_validation():
    m = TrainingModule(AE(image_size=32, **SMALL))
    logged = {}
    m.log_dict = lambda d, **kw: logged.update(d)
    m.training_step((_x(2, 32), torch.zeros(2, dtype=torch.long)), 0)
    assert "train/psnr" in logged and "train/ssim" not in logged


@pytest.mark.parametrize(("cls", "kw"), [(AE, {}), (VAE, {"skip": "variational"})])
def test_training_step_optimises_nats_per_dimension(cls, kw):
    m = TrainingModule(cls(image_size=32, **SMALL, **kw))
    m.beta = 0.25
    logged = {}
    m.log_dict = lambda d, *a, **k: logged.update(d)
    batch = (_x(2, 32), torch.zeros(2, dtype=torch.long))
    torch.manual_seed(0)
    out = m.training_step(batch, 0)
    per_dim = out["loss"]
    assert per_dim.shape == () and per_dim.requires_grad
    assert m.model.n_dims == 3 * 32 * 32
    # what the optimiser sees is the logged loss (nats per image) over the 3 H W dimensions
    loss = logged["train/loss"]
    assert per_dim.item() == pytest.approx(loss.item() / (3 * 32 * 32), rel=1e-6)
    # and that loss is recon + beta * KL (no free bits or balancing here), the ELBO's terms
    kl = logged.get("train/kl", torch.zeros(()))
    assert loss.item() == pytest.approx((logged["train/recon"] + 0.25 * kl).item(), rel=1e-6)
    # the step also hands the callbacks its plain KL and recon, in nats per image
    assert out["kl"].item() == pytest.approx(kl.item()) and not out["kl"].requires_grad
    assert out["recon"].item() == pytest.approx(logged["train/recon"].item())
    if m.model.has_kl:
        assert kl.item() > 0 and logged["train/elbo"].item() == pytest.approx(
            -(logged["train/recon"] + kl).item(), rel=1e-6
        )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"image_size": 60}, "not divisible"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"skip": "sideways"}, "model.skip"),
        ({"skip": "variational", "skip_posterior": "mlp"}, "model.skip_posterior"),
        ({"skip": "none", "skip_posterior": "mlp"}, "model.skip_posterior"),
        ({"block": "dense"}, "model.block"),
        ({"norm": "layer"}, "model.norm"),
        ({"skip_levels": [3]}, "model.skip_levels"),
        ({"free_bits": -1.0}, "model.free_bits"),
        ({"likelihood": "laplace"}, "model.likelihood"),
        ({"unknown_option": 1}, "unknown model options"),
    ],
)
def test_bad_model_settings_are_refused_with_the_key(kw, match):
    args = {"image_size": 32, **SMALL, **kw}
    with pytest.raises(ValueError, match=match):
        VAE(**args)


def test_ae_refuses_vae_options():
    with pytest.raises(ValueError, match="AE"):
        AE(image_size=32, **SMALL, skip="variational")


def test_resnet_blocks_build_and_run():
    torch.manual_seed(0)
    m = VAE(image_size=32, **SMALL, block="resnet")
    assert m.loss_terms(_x(2, 32)).recon.shape == (2,)
    torch.manual_seed(0)
    plain = VAE(image_size=32, **SMALL, block="plain")
    # the option reaches the blocks: residual blocks with a second conv, more parameters
    blocks = [b for b in m.modules() if isinstance(b, ConvBlock)]
    assert blocks and all(b.residual for b in blocks)
    assert not any(b.residual for b in plain.modules() if isinstance(b, ConvBlock))
    n_params = [sum(p.numel() for p in net.parameters()) for net in (m, plain)]
    assert n_params[0] > n_params[1]
    # the shortcut is used: zeroing the residual branch leaves act(shortcut(x)), not zero
    block = blocks[0]
    x = torch.randn(2, block.body[0].in_channels, 8, 8)
    with torch.no_grad():
        block.body[-1].weight.zero_()  # the branch's last norm: the branch outputs zero
        block.body[-1].bias.zero_()
        expected = torch.nn.functional.silu(block.shortcut(x))
        assert torch.allclose(block(x), expected, atol=1e-5)
