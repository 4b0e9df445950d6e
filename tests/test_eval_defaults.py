"""eval.py's defaults are the study's findings: the prior and each run's own sampler at T 1,
best by FID when FID runs; grid=full brings back every sampler and temperature; sections=[...]
runs only the named sections, with the numbers of the full run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import compose_config

from facemask_vae.evaluation import evaluate, load_everything, section_samples
from facemask_vae.evaluation.sample_settings import best_by, settings
from facemask_vae.models import Autoencoder

#: eval args of the session fixture that set the grid, dropped to get the defaults
GRID_KEYS = ("samplers=", "temperatures=", "skip_temperatures=", "sampling_bn=", "best_by=")


def test_the_default_sets_are_the_prior_and_the_runs_own_at_t1_and_grid_full_the_study_grid(
    tmp_path,
):
    cfg = compose_config([], tmp_path, name="eval")
    grid, headline = settings(cfg)
    assert [str(s) for s in grid] == ["prior, T 1", "run, T 1"] and grid[0] == headline
    assert cfg.best_by == "auto" and cfg.device == "auto" and cfg.sections == "default"
    full = compose_config(["grid=full"], tmp_path, name="eval")
    grid, _ = settings(full)
    assert len(grid) == 15 and {s.sampler for s in grid} >= {"prior", "two_stage_all"}
    assert full.best_by == "fd_cnn" and list(full.fid_settings) == ["headline", "best"]
    # a key of the group still takes a command-line override
    one = compose_config(["grid=full", "temperatures=[0.7]"], tmp_path, name="eval")
    assert {s.temperature for s in settings(one)[0]} == {0.7, 1.0}  # the headline stays T 1


def test_best_by_auto_is_fid_when_fid_runs_and_the_domain_fd_otherwise(tmp_path, monkeypatch):
    cfg = compose_config([], tmp_path, name="eval")
    monkeypatch.setattr("facemask_vae.fid.inception_weights", lambda: Path("inception.pt"))
    assert best_by(cfg) == "fid"
    cfg.fid = False
    assert best_by(cfg) == "fd_cnn"
    cfg.fid = True
    monkeypatch.setattr("facemask_vae.fid.inception_weights", lambda: None)
    assert best_by(cfg) == "fd_cnn"
    cfg.best_by = "fd_cnn"
    monkeypatch.setattr("facemask_vae.fid.inception_weights", lambda: Path("inception.pt"))
    assert best_by(cfg) == "fd_cnn"


def test_the_default_grid_draws_each_runs_own_sampler_at_its_saved_temperature(
    evaluated, tmp_path, monkeypatch
):
    """``run, T 1`` is the saved sampler at its saved temperature (the AE's gmm at 0.6), the
    prior at T 1; the table names each run's sampler."""
    _, args = evaluated
    keep = [a for a in args if not a.startswith(("hydra.", *GRID_KEYS))]
    drawn: list[tuple[str, str, float]] = []
    sample = Autoencoder.sample

    def spy(model, n, *a, **kw):
        sampler = kw.get("sampler")
        name = sampler.name if sampler else "prior"
        drawn.append((type(model).__name__, name, round(kw["temperature"], 6)))
        return sample(model, n, *a, **kw)

    monkeypatch.setattr(Autoencoder, "sample", spy)
    ctx = load_everything(compose_config(keep, tmp_path, name="eval"), tmp_path)
    section_samples(ctx)
    rows = [(r["model"], r["sampler"], r["temperature"]) for r in ctx.tables["samples"]]
    assert rows == [
        ("vae_unet-linear", "prior", 1.0),
        ("vae_unet-linear", "run", 1.0),
        ("ae", "prior", 1.0),
        ("ae", "run", 1.0),
    ]
    assert ctx.values["vae_unet-linear"]["samples.run_sampler"] == "two_stage_all, T 1"
    assert ctx.values["ae"]["samples.run_sampler"] == "gmm, T 0.6"
    assert set(drawn) == {
        ("VAE", "prior", 1.0),
        ("VAE", "two_stage_all", 1.0),
        ("AE", "prior", 1.0),
        ("AE", "gmm", 0.6),
    }


def test_sections_runs_only_the_named_ones_with_the_numbers_of_the_full_run(evaluated, tmp_path):
    out, args = evaluated
    keep = [a for a in args if not a.startswith("hydra.")]
    cfg = compose_config([*keep, "sections=[reconstruction]"], tmp_path, name="eval")
    result = evaluate(cfg, output_dir=tmp_path / "out")
    full = json.loads((out / "metrics.json").read_text())
    got = json.loads(Path(result["metrics"]).read_text())
    keys = {k for vals in got["metrics"].values() for k in vals}
    assert keys and all(k.startswith(("recon.", "model.")) for k in keys), keys
    for col, vals in got["metrics"].items():
        for k, v in vals.items():
            assert full["metrics"][col][k] == (pytest.approx(v) if isinstance(v, float) else v)
    assert set(got["timings_s"]) == {"setup (runs, data, CNN)", "reconstruction", "total"}
    report = Path(result["report"]).read_text()
    assert "## 1. Reconstruction" in report and "## 2. Random samples" not in report
