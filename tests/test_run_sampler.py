"""A trained run carries its own sampler: fitted at the end of training, saved as tensors,
checked against the run's weights, drawn from by ``load_run(...).sample``."""

from __future__ import annotations

import shutil

import pytest
import torch

from facemask_vae.checkpoints import CheckpointError, load_run
from facemask_vae.models import AE, VAE
from facemask_vae.run.files import RunFileError
from facemask_vae.run.sampler import FILE, default_choice
from facemask_vae.sampling import TwoStageSampler

SMALL = {"image_size": 32, "widths": [8, 16, 16], "latent_dim": 8}


def test_each_family_gets_the_studys_best_sampler():
    assert default_choice(VAE(**SMALL, skip="variational")) == ("two_stage_all", 1.0)
    assert default_choice(VAE(**SMALL)) == ("gmm", 0.6)
    assert default_choice(AE(**SMALL)) == ("gmm", 0.6)


def test_training_saves_the_run_sampler_and_its_grid(runs):
    for name, kind in (("vae_unet", "two_stage_all"), ("ae", "gmm")):
        run_dir = runs[name]
        assert (run_dir / FILE).is_file()
        assert (run_dir / "images" / "samples_run_sampler.png").is_file()
        assert (run_dir / "images" / "samples_prior.png").is_file()
        state = torch.load(run_dir / FILE, weights_only=True)  # tensors and plain values only
        assert state["sampler"]["kind"] == kind.removesuffix("_all")
    run = load_run(runs["vae_unet"])
    assert isinstance(run.sampler, TwoStageSampler) and run.sampler.all_levels
    assert run.run_sampler.temperature == 1.0 and run.run_sampler.fit_seconds > 0


def test_run_sample_draws_from_the_runs_sampler_by_default(runs):
    run = load_run(runs["vae_unet"])
    a, b = run.sample(6, seed=0), run.sample(6, seed=0)
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    prior = run.sample(6, seed=0, sampler="prior")
    assert not torch.allclose(a, prior)
    g = torch.Generator().manual_seed(0)
    own = run.model.sample(6, generator=g, temperature=1.0, sampler=run.sampler)
    assert torch.equal(a, own)
    with pytest.raises(ValueError, match="'prior' or a sampler"):
        run.sample(2, sampler="gmm")


def _copy(run_dir, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(run_dir, dst)
    return dst


def test_a_run_saved_without_a_sampler_fits_one_on_first_use_and_says_so(runs, tmp_path):
    dst = _copy(runs["ae"], tmp_path, "old")
    (dst / FILE).unlink()
    run = load_run(dst)
    assert run.sampler is None
    with pytest.warns(UserWarning, match="fitting one now"):
        x = run.sample(3, seed=1)
    assert x.shape == (3, 3, 32, 32) and (dst / FILE).is_file()
    assert load_run(dst).sampler is not None  # saved: the next load has it


def test_a_sampler_of_another_run_is_refused(runs, tmp_path):
    dst = _copy(runs["vae_unet"], tmp_path, "swapped")
    shutil.copy(runs["ae"] / FILE, dst / FILE)
    with pytest.raises(RunFileError, match=rf"{FILE}: fitted to other weights.*delete"):
        load_run(dst).sampler  # noqa: B018


@pytest.mark.parametrize("damage", ["truncated", "not_a_sampler"])
def test_a_damaged_sampler_file_is_refused_naming_it(runs, tmp_path, damage):
    dst = _copy(runs["vae_unet"], tmp_path, damage)
    path = dst / FILE
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
        match = "not a readable sampler file"
    else:
        torch.save({"weights": torch.zeros(3)}, path)
        match = "not a sampler file of this project"
    with pytest.raises(RunFileError, match=match) as err:
        load_run(dst).sampler  # noqa: B018
    assert str(path) in str(err.value)


def test_a_run_directory_without_a_checkpoint_fails_clearly(runs, tmp_path):
    dst = _copy(runs["vae_unet"], tmp_path, "empty")
    shutil.rmtree(dst / "checkpoints")
    with pytest.raises(CheckpointError, match="no checkpoints/"):
        load_run(dst)


def test_eval_draws_from_the_runs_saved_sampler_as_saved(runs):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from facemask_vae.evaluation import samples
    from facemask_vae.evaluation.sample_settings import Setting, model_settings, settings

    run = load_run(runs["vae_unet"])
    cfg = OmegaConf.create({"gmm_components": 2, "seed": 0, "two_stage": None})
    ctx = SimpleNamespace(cfg=cfg, runs=[run], names=["vae_unet"])
    assert samples.fitted_samplers(ctx, 0, ["run"])["run"] is run.sampler  # not refitted
    grid = [Setting("run", 1.0, True, 0.5)]
    assert model_settings(grid, has_skips=True) == [Setting("run", 1.0, True, None)]
    cfg = OmegaConf.create(
        {"samplers": ["prior", "run"], "temperatures": [1.0], "sampling_bn": [True]}
    )
    assert [s.sampler for s in settings(cfg)[0]] == ["prior", "run"]


def test_a_failed_attribute_fit_keeps_the_sampler(tmp_path, monkeypatch, caplog):
    """The attribute is fitted after the sampler is saved: its failure is logged, not fatal."""
    from helpers import TINY, compose_config

    from facemask_vae.run.attribute import FILE as ATTRIBUTE_FILE
    from facemask_vae.training import train

    def fail(*args, **kwargs):
        raise ValueError("each class needs at least 2 codes, got [5, 0]")

    monkeypatch.setattr("facemask_vae.run.callback.fit_run_attribute", fail)
    cfg = compose_config([*TINY, "model=ae", "trainer.max_epochs=1", "test=false"], tmp_path)
    train(cfg)
    assert (tmp_path / FILE).is_file() and not (tmp_path / ATTRIBUTE_FILE).exists()
    assert "run attribute: not fitted" in caplog.text
