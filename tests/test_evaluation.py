"""eval.py end to end on two tiny trained runs: the report, metrics.json and every figure, the
numbers' definitions, the final beta, the trained VAE's IWAE bound, determinism, sections run
alone, best_by=fid and the augmented probe. Pieces tested on tiny untrained models or fakes
are in test_evaluation_parts.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from helpers import compose_config

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.annealing import Linear
from facemask_vae.checkpoints import load_run
from facemask_vae.evaluation import (
    REFERENCE,
    evaluate,
    load_everything,
    section_probes,
    section_reconstruction,
    section_samples,
    section_shifts,
    section_skips,
)
from facemask_vae.evaluation.probes import latent_probe
from facemask_vae.evaluation.sample_fid import SampleFid

FIGURES = {
    "reconstructions.png",
    "samples.png",
    "samples_best.png",
    "tsne.png",
    "interpolations.png",
    "training_curves.png",
    "swap.png",
    "shifts.png",
    "editing.png",
}


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    else:
        yield tree


def test_eval_writes_the_report_metrics_and_every_figure(evaluated):
    out, _ = evaluated
    for name in ("report.md", "metrics.json", *FIGURES):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    for fig in FIGURES:
        assert f"]({fig})" in report, fig  # every figure is shown, with a caption
    assert "eval.py" in report and "fid=false" in report  # the command that produced it
    assert "| vae_unet-linear | ae | data (reference) |" in report  # one column per model
    assert "bits/dim" in report


def _table_rows(report: str) -> list[list[str]]:
    """The cells of every row of the report's tables, the label first."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in report.splitlines()
        if line.startswith("| ")
    ]


def test_the_report_table_shows_the_numbers_of_metrics_json(evaluated):
    """Each model's number of a metric, formatted, in that model's column of one row."""
    out, _ = evaluated
    values = json.loads((out / "metrics.json").read_text())["metrics"]
    rows = _table_rows((out / "report.md").read_text())
    header = next(r for r in rows if r[0] == "" and "ae" in r)
    columns = header[1:]
    assert columns == ["vae_unet-linear", "ae", REFERENCE]
    keys = ("recon.mse", "recon.psnr", "recon.iwae_bpd8", "train.beta", "skips.kl_top_share")
    keys += ("probe.logreg.accuracy", "samples.fd_cnn")
    for key in keys:
        want = [R.fmt(values[c].get(key)) for c in columns]
        assert any(r[1:] == want for r in rows), f"no row {want} for {key}"


def test_every_number_in_metrics_json_is_finite(evaluated):
    out, _ = evaluated
    doc = json.loads((out / "metrics.json").read_text())
    values = doc["metrics"]
    assert set(values) == {"vae_unet-linear", "ae", REFERENCE}
    for col, vals in values.items():
        for key, v in vals.items():
            assert v is not None, f"{col}/{key} is null (was non-finite)"
            if isinstance(v, float):
                assert math.isfinite(v), f"{col}/{key} = {v}"
    vae, ae, ref = values["vae_unet-linear"], values["ae"], values[REFERENCE]
    # the sections each model should have
    for key in ("recon.mse", "recon.psnr", "recon.ssim", "latent.knn", "probe.logreg.accuracy"):
        assert key in vae and key in ae, key
    for key in ("recon.neg_elbo", "recon.iwae", "recon.iwae_bpd8", "interp.slerp.pixel_ratio"):
        assert key in vae and key not in ae, key
    # IWAE is the tighter bound, up to the noise of the one-sample ELBO on 16 images: that noise
    # is ~40 nats (one-sample NLLs spread ~150 nats per image), so 5 standard errors would allow
    # more than this 1%; the strict check is on the trained model, in a test of its own
    assert vae["recon.iwae_gain"] > -0.01 * abs(vae["recon.neg_elbo"])
    assert {"skips.swap_top", "skips.swap_skips", "skips.kl_level3"} <= set(vae)
    assert {"samples.fd_cnn", "samples.fd_cnn_best", "samples.best"} <= set(ae)
    # the best setting is the one with the lowest domain FD in the table of every setting
    table = doc["tables"]["samples"]
    # samplers x temperatures x BN statistics, x 2 skip temperatures for the U-Net VAE only, whose
    # gaussian_all (every level fitted: no skip level drawn) takes no skip temperature; none
    # for the AE, which has no skip levels
    assert len(table) == 2 * 2 * 2 * 2 + 2 * 2 + 2 * 2 * 2
    unet_skip_ts = {r["skip_temperature"] for r in table if r["model"] == "vae_unet-linear"}
    assert unet_skip_ts == {None, 0.5}
    joint = [r for r in table if r["sampler"] == "gaussian_all"]
    assert {r["model"] for r in joint} == {"vae_unet-linear"} and len(joint) == 4
    assert {r["skip_temperature"] for r in joint} == {None}
    assert {r["skip_temperature"] for r in table if r["model"] == "ae"} == {None}
    for col in ("ae", "vae_unet-linear"):
        rows = [r for r in table if r["model"] == col]
        best = min(rows, key=lambda r: r["fd_cnn"])
        assert values[col]["samples.fd_cnn_best"] == best["fd_cnn"]
        head = next(
            r
            for r in rows
            if (r["sampler"], r["temperature"], r["skip_temperature"], r["sampling_bn"])
            == ("prior", 1.0, None, True)
        )
        assert values[col]["samples.fd_cnn"] == head["fd_cnn"]
    assert {"probe.cnn.accuracy", "probe.logreg.accuracy", "samples.fd_cnn"} <= set(ref)
    # probes under shift: the configured shifts only, accuracies, their mean per column
    for col, kind in ((vae, "probe"), (ae, "probe"), (ref, "cnn")):
        got = {k for k in col if k.startswith("shift.")}
        assert got == {f"shift.{s}.{kind}" for s in ("zoom_out", "grayscale", "mean")}
        assert all(0 <= col[k] <= 1 for k in got)
        mean = (col[f"shift.zoom_out.{kind}"] + col[f"shift.grayscale.{kind}"]) / 2
        assert col[f"shift.mean.{kind}"] == pytest.approx(mean)
    assert vae["train.epochs"] == 2
    assert all(isinstance(v, float | int | str | bool) for v in _numbers(values))
    assert doc["timings_s"]["total"] > 0


def test_report_numbers_follow_from_their_definitions(evaluated):
    out, _ = evaluated
    values = json.loads((out / "metrics.json").read_text())["metrics"]
    vae, ae = values["vae_unet-linear"], values["ae"]
    n_dims = 3 * 32 * 32
    # the negative ELBO is NLL + KL, and KL is the sum of the per-level KLs on the same images
    assert vae["recon.neg_elbo"] == pytest.approx(vae["recon.nll"] + vae["recon.kl"], rel=1e-6)
    levels = [vae[f"skips.kl_level{i}"] for i in range(4)]
    assert vae["recon.kl"] == pytest.approx(sum(levels), rel=1e-3)
    assert vae["skips.kl_top_share"] == pytest.approx(levels[0] / sum(levels), rel=1e-3)
    # bits/dim: nats per image / (3 H W ln 2); the 8-bit figure adds log2(256) = 8 bits/dim
    # (a density on [0, 1] is one on {0..255}/255 bins of width 1/256, up to discretisation)
    assert vae["recon.neg_elbo_bpd"] == pytest.approx(
        vae["recon.neg_elbo"] / (n_dims * math.log(2)), rel=1e-6
    )
    assert vae["recon.iwae_bpd"] == pytest.approx(
        vae["recon.iwae"] / n_dims / math.log(2), rel=1e-9
    )
    assert vae["recon.iwae_bpd8"] == pytest.approx(vae["recon.iwae_bpd"] + 8.0, rel=1e-12)
    for col in (vae, ae):
        # PSNR is 10 log10(1 / MSE) per image, averaged: by Jensen at least the PSNR of the mean
        # MSE (it is capped at 100 dB, which no reconstruction here reaches)
        assert 0 < col["recon.mse"] < 1 and col["recon.psnr"] < 100
        assert col["recon.psnr"] >= 10 * math.log10(1 / col["recon.mse"]) - 1e-4
        assert -1 <= col["recon.ssim"] <= 1
    for col, vals in values.items():
        for key, v in vals.items():
            if key.endswith(("share", "accuracy", "confident", "_fitted")) and "fd_" not in key:
                assert 0 <= v <= 1, f"{col}/{key} = {v}"


def test_the_final_beta_is_the_linear_schedule_of_the_last_epoch(evaluated, runs):
    """train.beta is the last epoch's mean of beta(step) with warmup_epochs converted to steps."""
    out, _ = evaluated
    vae = json.loads((out / "metrics.json").read_text())["metrics"]["vae_unet-linear"]
    cfg = load_run(runs["vae_unet"]).config
    n, bs, epochs = cfg.data.n_train, cfg.data.batch_size, vae["train.epochs"]
    per_epoch = math.ceil(n / bs)
    sizes = [min(bs, n - i * bs) for i in range(per_epoch)]
    schedule = Linear(
        warmup_steps=round(cfg.anneal.warmup_epochs * per_epoch),
        beta_min=cfg.anneal.beta_min,
        beta_max=cfg.anneal.beta_max,
    )
    first = (epochs - 1) * per_epoch
    expected = sum(schedule(first + i) * w for i, w in enumerate(sizes)) / n
    assert 0 < expected < 1  # still warming up: the check tells the step count apart
    assert vae["train.beta"] == pytest.approx(expected, abs=1e-6)


def test_the_iwae_bound_of_the_trained_vae_is_at_least_its_elbo(runs):
    """On the trained model the mean log-weight is the analytic-KL ELBO and the bound is above
    it, within 5 standard errors of a paired estimate: a wrong density term (a level left out,
    counted twice, a wrong sign) moves the log-weights by its KL, several nats here."""
    run = load_run(runs["vae_unet"])
    m = run.model
    dm = hydra.utils.instantiate(run.config.data)
    test = dm.dataset("test")
    x, _ = dm.on_after_batch_transfer((test.images[:8], test.labels[:8]), 0)
    k = 64
    lw = m.importance_log_weights(x, k, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)  # the same noise as the log-weights drew: the pairs share z
    with torch.no_grad():
        elbo = torch.stack(
            [
                -(t.recon + sum(kl.sum(1) for kl in t.kls))
                for t in (m.loss_terms(x) for _ in range(k))
            ]
        ).double()
    # per pair the reconstruction term cancels, leaving log p(z) - log q(z) + KL (mean 0); were
    # the pairs not to share z, the spread would be the ELBO's and the check only looser
    d = lw - elbo
    se = d.std(0) / math.sqrt(k)
    assert torch.all(se < 0.2 * elbo.std(0) / math.sqrt(k))  # the pairing works: a tight check
    assert torch.all(d.mean(0).abs() < 5 * se + 1e-3)
    assert torch.all(M.iwae_bound(lw) > elbo.mean(0) - 5 * se)


def test_results_are_deterministic_for_a_seed(evaluated, runs, tmp_path):
    """The same config in-process (the CNN now from the cache) gives the same numbers."""
    out, args = evaluated
    overrides = [a for a in args if not a.startswith("hydra.")]
    cfg = compose_config(overrides, tmp_path, name="eval")
    result = evaluate(cfg, output_dir=tmp_path)
    first = json.loads((out / "metrics.json").read_text())["metrics"]
    again = json.loads(Path(result["metrics"]).read_text())["metrics"]
    assert first.keys() == again.keys()
    for col in first:
        for key, v in first[col].items():
            if isinstance(v, float):
                assert again[col][key] == pytest.approx(v, rel=1e-6, abs=1e-9), f"{col}/{key}"
            else:
                assert again[col][key] == v, f"{col}/{key}"


@pytest.mark.parametrize(
    ("section", "prefix"),
    [(section_skips, "skips."), (section_probes, "probe."), (section_shifts, "shift.")],
)
def test_a_later_section_runs_alone_with_the_numbers_of_the_full_run(
    evaluated, tmp_path, section, prefix
):
    """Latents, per-level KLs and pairs come from cached accessors, not from what an earlier
    section left behind: a section run alone on a fresh context gives the same numbers."""
    out, args = evaluated
    cfg = compose_config([a for a in args if not a.startswith("hydra.")], tmp_path, name="eval")
    full = json.loads((out / "metrics.json").read_text())["metrics"]
    ctx = load_everything(cfg, tmp_path)
    section(ctx)
    got = {(col, k): v for col, vals in ctx.values.items() for k, v in vals.items()}
    want = {
        (col, k): v for col, vals in full.items() for k, v in vals.items() if k.startswith(prefix)
    }
    assert got.keys() == want.keys() and len(got) > 5  # this section's numbers, no other's
    for key, v in want.items():
        expected = pytest.approx(v, rel=1e-6, abs=1e-9) if isinstance(v, float) else v
        assert got[key] == expected, key


@pytest.mark.parametrize("favoured", [1.0, 0.5])
def test_best_by_fid_measures_every_setting_and_picks_the_lowest_fid(
    evaluated, tmp_path, monkeypatch, favoured
):
    """A stand-in FID favours one temperature: with ``best_by=fid`` that one is each model's
    best, whichever the domain FD prefers, and every setting has its FID."""

    class FakeFid:
        def __call__(self, images, desc, feats=None):
            fid = 1.0 if desc.endswith(f"T {favoured:g}") else 2.0
            return {"fid": fid, "kid": fid / 10, "kid_std": 0.0}

        def real_features(self, images, labels, what):
            return None

    monkeypatch.setattr(SampleFid, "create", classmethod(lambda cls, ctx: FakeFid()))
    _, args = evaluated
    grid = ["fid=true", "best_by=fid", "samplers=[prior]", "temperatures=[1.0,0.5]"]
    grid += ["skip_temperatures=[null]", "sampling_bn=[true]"]
    keep = [a for a in args if not a.startswith(("hydra.", *(g.split("=")[0] + "=" for g in grid)))]
    ctx = load_everything(compose_config([*keep, *grid], tmp_path, name="eval"), tmp_path)
    section_samples(ctx)
    rows = ctx.tables["samples"]
    assert len(rows) == 4 and all("fid" in r for r in rows)  # 2 models x 2 temperatures
    for name in ("vae_unet-linear", "ae"):
        assert ctx.values[name]["samples.best"] == f"prior, T {favoured:g}"
        assert ctx.values[name]["samples.fid_best"] == 1.0


@pytest.mark.parametrize("split", ["test", "val"])
def test_the_reconstruction_fid_scores_mean_reconstructions_of_the_other_split(
    evaluated, tmp_path, monkeypatch, split
):
    """recon_fid: the FID is given each model's mean reconstructions of the other split's images
    (not the images themselves, not the evaluation split's), and the reference column those
    real images' features. Off by default."""
    out, args = evaluated
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert not any("recon.fid" in v for v in metrics.values())
    given = {}

    class Recording:  # a stand-in FID that keeps what it is given
        def __call__(self, images, desc, feats=None, ref=None):
            given[desc.split(":")[0]] = images if feats is None else feats
            return {"fid": float(len(given))}

        def real_features(self, images, labels, what):
            return ("features of", what, len(images))

    monkeypatch.setattr(
        SampleFid, "create", classmethod(lambda cls, ctx, section="samples": Recording())
    )
    keep = [a for a in args if not a.startswith(("hydra.", "sections=", "split="))]
    overrides = [*keep, "sections=[reconstruction]", "recon_fid=true", f"split={split}"]
    ctx = load_everything(compose_config(overrides, tmp_path, name="eval"), tmp_path)
    section_reconstruction(ctx)
    other = {"test": "val", "val": "test"}[split]
    images = ctx.dm.dataset(other).images
    assert given[f"real {other} images"] == ("features of", other, len(images))
    assert ctx.values[REFERENCE]["recon.fid"] == 1.0
    x, own = ctx.floats(images), ctx.floats(ctx.x_test)
    for i, (name, run) in enumerate(zip(ctx.names, ctx.runs, strict=True)):
        assert ctx.values[name]["recon.fid"] == i + 2
        assert torch.allclose(given[name], run.model.reconstruct(x), atol=1e-5)
    unet = ctx.runs[ctx.names.index("vae_unet-linear")].model  # it reconstructs faithfully
    n = min(len(x), len(own))
    assert not torch.allclose(given["vae_unet-linear"][:n], unet.reconstruct(own)[:n], atol=1e-2)
    assert not torch.allclose(given["vae_unet-linear"], x, atol=1e-5)
    # skips that are encoder features are not latents a sampler could draw: no number, a note
    unet.config.skip = "deterministic"
    ctx.values.clear()
    section_reconstruction(ctx)
    assert "recon.fid" not in ctx.values["vae_unet-linear"] and "recon.fid" in ctx.values["ae"]
    assert any("no reconstruction FID" in n for n in ctx.notes["reconstruction"])


def test_one_class_samples_are_compared_with_unconditional_draws_against_the_same_class(
    evaluated, tmp_path, monkeypatch
):
    """With a stand-in FID that reads which class's test images it is given, and whether the
    sample set is the one-class or the unconditional one: each FID uses its class's reference,
    and the comparison uses the run's draws not cut to a class, with features computed once."""
    from facemask_vae.evaluation.editing import section_editing

    calls = []

    class FakeFid:
        timing = "editing: of which FID/KID"

        def inc(self, images, desc):
            calls.append(desc)
            return images.flatten(1)[:, :4]

        def __call__(self, images, desc, feats=None, ref=None):
            every = desc.endswith("unconditional")
            assert every == (feats is not None)  # the unconditional set's features, reused
            return {"fid": 100 * float(ref[0]) + every}

        def real_features(self, images, labels, what):
            return torch.full((1,), float(labels[0]))  # the class, as the stand-in reads it

    def create(cls, ctx, section="samples"):
        ctx.timings[FakeFid.timing] = 0.0
        return FakeFid()

    monkeypatch.setattr(SampleFid, "create", classmethod(create))
    _, args = evaluated
    keep = [a for a in args if not a.startswith(("hydra.", "sections=", "edit_fid="))]
    cfg = compose_config([*keep, "sections=[editing]", "edit_fid=true"], tmp_path, name="eval")
    ctx = load_everything(cfg, tmp_path)
    section_editing(ctx)
    for name in ("vae_unet-linear", "ae"):
        got = ctx.values[name]
        assert (got["cond.fid_mask"], got["cond.fid_nomask"]) == (100.0, 0.0)
        assert (got["cond.fid_mask_uncond"], got["cond.fid_nomask_uncond"]) == (101.0, 1.0)
        assert got["cond.fd_cnn_mask_uncond"] != got["cond.fd_cnn_mask"]
    assert sum(d.endswith("unconditional") for d in calls) == 2  # once per model


def test_the_augmented_probe_adds_seeded_augmented_copies_and_leaves_the_plain_probe(
    evaluated, tmp_path, monkeypatch
):
    """probe_augment: a second probe fitted on the training latents plus those of one augmented
    copy per image (labels repeated); the plain probe's numbers are the full run's."""
    import facemask_vae.evaluation.shifts as shifts_mod

    out, args = evaluated
    overrides = [a for a in args if not a.startswith("hydra.")]
    opts = "probe_augment={zoom_out:0.5,zoom_out_p:1.0}"
    cfg = compose_config([*overrides, opts], tmp_path, name="eval")
    fits = []
    fit = M.fit_probe
    monkeypatch.setattr(
        shifts_mod.M, "fit_probe", lambda z, y, **kw: fits.append((z, y)) or fit(z, y, **kw)
    )
    full = json.loads((out / "metrics.json").read_text())["metrics"]
    ctx = load_everything(cfg, tmp_path)
    section_shifts(ctx)
    n = len(ctx.y_train)
    aug_fits = [(z, y) for z, y in fits if len(z) == 2 * n]
    assert len(aug_fits) == 2  # one per run
    z, y = aug_fits[0]
    assert (y[:n] == y[n:]).all() and (y[:n] == ctx.y_train.numpy()).all()
    assert not torch.allclose(torch.as_tensor(z[:n]), torch.as_tensor(z[n:]))  # copies differ
    for col, vals in full.items():
        for key in (k for k in vals if k.startswith("shift.") and not k.endswith("_aug")):
            assert ctx.values[col][key] == pytest.approx(vals[key], rel=1e-6), (col, key)
    vae = ctx.values["vae_unet-linear"]
    assert {"shift.none.probe_aug", "shift.zoom_out.probe_aug", "shift.mean.probe_aug"} <= set(vae)
    mean = (vae["shift.zoom_out.probe_aug"] + vae["shift.grayscale.probe_aug"]) / 2
    assert vae["shift.mean.probe_aug"] == pytest.approx(mean)
    plain = latent_probe(ctx, 0)
    augmented = shifts_mod.augmented_probe(ctx, 0)
    assert not np.allclose(plain[-1].coef_, augmented[-1].coef_)  # not the plain probe again
    # seeded: a fresh context fits the same augmented probe
    again = load_everything(cfg, tmp_path)
    assert shifts_mod.augmented_probe(again, 0) is not None
    assert torch.allclose(torch.as_tensor(fits[-1][0]), torch.as_tensor(aug_fits[0][0]))


def test_editing_measures_four_edits_of_a_u_net_and_one_of_the_ae(evaluated):
    """A U-Net VAE's codes are spatial: the default lower-face edit keeping half the face's own
    code, the plain mean shift there, the whole-face one and the top latent alone, at each
    strength; the AE has one edit. The confidence used is recorded."""
    out, _ = evaluated
    data = json.loads((out / "metrics.json").read_text())
    rows = data["tables"]["editing"]
    edits = {
        m: {(r["levels"], r["region"], r["keep"], r["strength"]) for r in rows if r["model"] == m}
        for m in ("vae_unet-linear", "ae")
    }
    strengths = (1.0, 2.0)
    variants = [("all", "lower", 0.5), ("all", "lower", 1.0), ("all", "all", 1.0)]
    variants.append(("top", "all", 1.0))
    assert edits["vae_unet-linear"] == {(*edit, s) for edit in variants for s in strengths}
    assert edits["ae"] == {("all", "lower", None, s) for s in strengths}  # keep does not act
    by_keep = {
        r["keep"]: r["psnr_upper_on"]
        for r in rows
        if r["model"] == "vae_unet-linear" and r["region"] == "lower" and r["strength"] == 1.0
    }
    assert by_keep[0.5] != by_keep[1.0]  # each edit measured as named
    unet = next(
        r
        for r in rows
        if r["model"] == "vae_unet-linear"
        and r["strength"] == 1.0
        and (r["region"], r["keep"]) == ("lower", 0.5)
    )
    assert data["metrics"]["vae_unet-linear"]["edit.flip_on"] == unet["flip_on"]  # the headline
    assert data["metrics"]["ae"]["cond.confidence"] == 0.5  # conftest's edit_confidence
