"""Acting on the mask label: the attribute's class means and probe, edits that move codes along
the class-mean difference, class-conditional draws by rejection, and the run API around them
(``run.edit``, ``run.sample(n, mask=...)``, ``attribute.pt``)."""

from __future__ import annotations

import shutil

import pytest
import torch

from facemask_vae.checkpoints import load_run
from facemask_vae.evaluation.editing import paste_lower_face
from facemask_vae.run.attribute import FILE
from facemask_vae.run.files import RunFileError
from facemask_vae.sampling import fit_gaussian
from facemask_vae.sampling.attribute import (
    MaskAttribute,
    fit_attribute,
    lower_face_start,
    upper_face_rows,
)
from facemask_vae.sampling.conditional import ClassConditionalSampler


def _codes(n: int = 400, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Two levels (N x 4 and N x 2 x 3 x 3) whose class-1 codes sit 3 units up in a few places."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).long()
    top = torch.randn(n, 4, generator=g)
    top[:, 0] += 3.0 * y
    skip = torch.randn(n, 2, 3, 3, generator=g)
    skip[:, 1, 2, :] -= 3.0 * y.view(-1, 1)
    return [top, skip], y


def test_the_directions_are_the_class_mean_differences_and_shift_moves_along_them():
    levels, y = _codes()
    attr = fit_attribute(levels, y, probe_all_levels=True)
    for i, c in enumerate(levels):
        assert torch.allclose(attr.direction(i), c[y == 1].mean(0) - c[y == 0].mean(0))
    assert attr.direction(0)[0] == pytest.approx(3.0, abs=0.5)
    assert attr.direction(1)[1, 2].mean() == pytest.approx(-3.0, abs=0.5)
    on = attr.shift(levels, mask=True, strength=0.5, region="all", keep=1.0)
    off = attr.shift(levels, mask=False, strength=2.0, region="all", keep=1.0)
    top_only = attr.shift(levels, mask=True, levels="top")
    for i, c in enumerate(levels):
        assert torch.allclose(on[i], c + 0.5 * attr.direction(i))
        assert torch.allclose(off[i], c - 2.0 * attr.direction(i))
    assert torch.allclose(top_only[0], levels[0] + attr.direction(0))
    assert torch.equal(top_only[1], levels[1])
    with pytest.raises(ValueError, match="levels must be one of"):
        attr.shift(levels, mask=True, levels="skips")
    with pytest.raises(ValueError, match="1 levels of codes given"):
        attr.shift(levels[:1], mask=True)


def test_a_lower_face_edit_keeps_the_spatial_codes_above_the_cut():
    """lower_start 0.5 on a 3-row level: rows 0-1 stay (1.5 rounds half up to 2), row 2 moves;
    the top latent, a vector, moves whole. Without a cut the lower-face edit names the fix."""
    levels, y = _codes()
    attr = fit_attribute(levels, y, probe_all_levels=True, lower_start=0.5)
    on = attr.shift(levels, mask=True, strength=1.0, keep=1.0)  # region="lower" by default
    assert torch.allclose(on[0], levels[0] + attr.direction(0))
    assert torch.equal(on[1][:, :, :2], levels[1][:, :, :2])
    assert torch.allclose(on[1][:, :, 2:], levels[1][:, :, 2:] + attr.direction(1)[:, 2:])
    everywhere = attr.shift(levels, mask=True, region="all", keep=1.0)
    assert not torch.equal(everywhere[1][:, :, :2], levels[1][:, :, :2])
    with pytest.raises(ValueError, match="region must be one of"):
        attr.shift(levels, mask=True, region="upper")
    uncut = fit_attribute(levels, y, probe_all_levels=True)
    with pytest.raises(
        ValueError, match=r"does not know where the lower face begins.*region='all'"
    ):
        uncut.shift(levels, mask=True)
    top = uncut.shift(levels, True, levels="top", keep=1.0)  # the top latent needs no cut
    assert torch.allclose(top[0], on[0]) and torch.equal(top[1], levels[1])
    # rows round half up at every height: 0.5 of 1 row keeps it, 0.5 of 2 rows keeps one
    d1 = attr._region(torch.ones(2, 1, 4), "lower")
    d2 = attr._region(torch.ones(2, 2, 4), "lower")
    assert d1.sum() == 0 and d2[:, 0].sum() == 0 and d2[:, 1].sum() == 8
    with pytest.raises(ValueError, match="lower_start must lie in"):
        fit_attribute(levels, y, probe_all_levels=True, lower_start=1.5)


def test_keep_shrinks_the_faces_own_spatial_code_towards_its_class_mean_where_the_edit_acts():
    levels, y = _codes()
    attr = fit_attribute(levels, y, probe_all_levels=True, lower_start=0.5)
    for mask in (True, False):
        source, target = attr.means[0 if mask else 1][1], attr.means[1 if mask else 0][1]
        plain = attr.shift(levels, mask, keep=1.0)
        to_mean = attr.shift(levels, mask, keep=0.0)
        half = attr.shift(levels, mask, keep=0.5)
        for edit in (to_mean, half):
            assert torch.allclose(edit[0], plain[0])  # the top latent keeps the whole face
            assert torch.equal(edit[1][:, :, :2], levels[1][:, :, :2])  # above the cut: kept
        lower = levels[1][:, :, 2:]
        assert torch.allclose(to_mean[1][:, :, 2:], target[:, 2:].expand_as(lower), atol=1e-5)
        want = target[:, 2:] + 0.5 * (lower - source[:, 2:])
        assert torch.allclose(half[1][:, :, 2:], want, atol=1e-5)
        default = attr.shift(levels, mask)  # keep 0.5 is the default
        assert all(torch.allclose(a, b) for a, b in zip(default, half, strict=True))
    far = attr.shift(levels, True, strength=2.0, keep=0.0)  # the class mean, moved twice
    want = attr.means[0][1][:, 2:] + 2.0 * attr.direction(1)[:, 2:]
    assert torch.allclose(far[1][:, :, 2:], want.expand_as(far[1][:, :, 2:]), atol=1e-5)
    # codes on another device stay there (the means are kept on the CPU)
    on_meta = attr.shift([c.to("meta") for c in levels], True)
    assert all(c.device.type == "meta" for c in on_meta)
    whole = attr.shift(levels, True, region="all", keep=0.0)
    assert torch.allclose(whole[1], attr.means[1][1].expand_as(levels[1]), atol=1e-5)
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="keep must be a number in"):
            attr.shift(levels, True, keep=bad)


def test_the_lower_face_starts_where_masks_make_the_class_means_differ():
    """Synthetic faces: masks cover the lower face, so the cut sits near the middle."""
    from facemask_vae.data.synthetic import generate_faces

    images, labels = generate_faces(400, image_size=32, seed=0)
    start = lower_face_start(images, labels, lambda x: x.float() / 255)
    assert 0.35 <= start <= 0.65
    with pytest.raises(ValueError, match="both classes"):
        lower_face_start(images[labels == 1], labels[labels == 1], lambda x: x.float() / 255)


def test_the_probe_tells_the_classes_apart_on_the_codes_it_was_fitted_to():
    levels, y = _codes()
    test, y_test = _codes(seed=1)
    for all_levels in (True, False):
        attr = fit_attribute(levels, y, probe_all_levels=all_levels)
        flat = torch.cat([c.flatten(1) for c in (test if all_levels else test[:1])], dim=1)
        acc = ((attr.p_mask(flat) > 0.5).long() == y_test).float().mean()
        assert attr.probe_dim == flat.shape[1] and acc > 0.9
    with pytest.raises(ValueError, match="the probe reads 4-d codes"):
        attr.p_mask(torch.zeros(2, 22))


def test_the_attribute_state_round_trips_as_plain_tensors(tmp_path):
    levels, y = _codes()
    attr = fit_attribute(levels, y, probe_all_levels=True)
    attr.lower_start = 0.4
    torch.save(attr.state_dict(), tmp_path / "a.pt")
    again = MaskAttribute.from_state(torch.load(tmp_path / "a.pt", weights_only=True))
    assert again.lower_start == pytest.approx(0.4)
    with pytest.raises(ValueError, match="lower_start must lie in"):
        MaskAttribute.from_state(attr.state_dict() | {"lower_start": 1.5})
    flat = torch.cat([c.flatten(1) for c in levels], dim=1)
    assert torch.equal(again.p_mask(flat), attr.p_mask(flat))
    assert all(torch.equal(a, b) for a, b in zip(again.means[1], attr.means[1], strict=True))
    broken = attr.state_dict() | {"weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="one length"):
        MaskAttribute.from_state(broken)
    with pytest.raises(ValueError, match="two classes"):
        MaskAttribute.from_state(attr.state_dict() | {"means": attr.state_dict()["means"][:1]})


def test_class_conditional_draws_keep_only_the_requested_class():
    levels, y = _codes(1000)
    flat = torch.cat([c.flatten(1) for c in levels], dim=1)
    attr = fit_attribute(levels, y, probe_all_levels=True)
    base = fit_gaussian(flat, all_levels=True)
    g = torch.Generator().manual_seed(0)
    for mask in (True, False):
        cond = ClassConditionalSampler(base, attr, mask)  # confidence 0.99 by default
        z = cond.sample(200, generator=g)
        assert z.shape == (200, flat.shape[1]) and cond.all_levels
        p = attr.p_mask(z)
        assert ((p > 0.99) if mask else (p < 0.01)).all()
        loose = ClassConditionalSampler(base, attr, mask, confidence=0.5)
        p = attr.p_mask(loose.sample(2000, generator=g))
        assert ((p > 0.5) == mask).all()
        assert (((p > 0.5) & (p < 0.99)) | ((p < 0.5) & (p > 0.01))).any()  # a margin kept out
        assert loose.fingerprint != cond.fingerprint  # different draws, told apart
    for bad in (0.3, 1.0):
        with pytest.raises(ValueError, match="confidence must lie in"):
            ClassConditionalSampler(base, attr, True, confidence=bad)
    only_without = fit_gaussian(flat[y == 0][:, :4])  # the top latent of unmasked codes only
    top_attr = fit_attribute(levels, y, probe_all_levels=False)
    with pytest.raises(RuntimeError, match="rarely draws it"):
        ClassConditionalSampler(only_without, top_attr, True, max_rounds=2).sample(500, 0.1, g)
    with pytest.raises(ValueError, match="fit them to the same codes"):
        ClassConditionalSampler(only_without, attr, True)


def _copy(run_dir, tmp_path, name):
    shutil.copytree(run_dir, tmp_path / name)
    return tmp_path / name


def test_training_saves_the_attribute_on_the_codes_its_sampler_draws(runs):
    for name, all_levels in (("vae_unet", True), ("ae", False)):
        assert (runs[name] / FILE).is_file()
        run = load_run(runs[name])
        attr = run.attribute
        assert attr.probe_all_levels == all_levels == run.sampler.all_levels
        assert attr.probe_dim == run.sampler.dim
        assert [m.numel() for m in attr.means[0]] == run.model.latent_sizes


def test_edit_moves_every_level_or_the_top_only_and_a_plain_shift_of_zero_reconstructs(runs):
    from facemask_vae.data.synthetic import generate_faces

    x = generate_faces(4, image_size=32, seed=3)[0]  # uint8, like the data
    for name in ("vae_unet", "ae"):
        run = load_run(runs[name])
        rec = run.model.reconstruct(x.float() / 255)
        assert torch.allclose(run.edit(x, mask=True, strength=0.0, keep=1.0), rec, atol=1e-6)
        # letting go of the face's own code changes a U-Net VAE's output even at strength 0
        assert torch.allclose(run.edit(x, mask=True, strength=0.0), rec, atol=1e-6) == (
            name == "ae"
        )
        on, off = run.edit(x, mask=True), run.edit(x, mask=False)
        assert on.shape == x.shape and on.min() >= 0 and on.max() <= 1
        assert not torch.allclose(on, off)
        top = run.edit(x, mask=True, levels="top")
        # the AE has one level: the top is all of it; the U-Net VAE's skips move too
        assert torch.allclose(top, on) == (name == "ae")
        # by default the skips move below the upper face only; the AE has no spatial codes
        whole = run.edit(x, mask=True, region="all")
        assert torch.allclose(whole, on) == (name == "ae")


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(2, 1, 32, 32), "3 \\(RGB\\) channels.*convert"),
        (torch.zeros(2, 4, 32, 32), "3 \\(RGB\\) channels"),
        (torch.zeros(2, 3, 64, 64), "32 x 32 px images.*resize"),
        (torch.full((2, 3, 32, 32), 2.0), "must lie in \\[0, 1\\].*divide"),
        (torch.zeros(0, 3, 32, 32), "non-empty"),
        (torch.zeros(3, 32, 32), "non-empty B x 3 x 32 x 32"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.int64), "uint8 or floats"),
    ],
)
def test_edit_refuses_bad_images_with_the_fix(runs, images, match):
    with pytest.raises(ValueError, match=match):
        load_run(runs["ae"]).edit(images, mask=True)


def test_conditional_samples_come_from_the_runs_sampler_cut_to_the_asked_class(runs, monkeypatch):
    run = load_run(runs["vae_unet"])
    with pytest.raises(RuntimeError, match=r"pass a lower one.*confidence=0\.9"):
        run.sample(5, seed=0, mask=True)  # a 2-step model's probe is never 99% sure
    a, b = (run.sample(5, seed=0, mask=True, confidence=0.5) for _ in range(2))
    assert a.shape == (5, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, run.sample(5, seed=0, mask=False, confidence=0.5))
    used = []
    sample = type(run.model).sample
    monkeypatch.setattr(
        type(run.model),
        "sample",
        lambda model, n, **kw: used.append(kw["sampler"]) or sample(model, n, **kw),
    )
    for mask in (True, False):
        run.sample(4, seed=0, mask=mask, bn_batches=1, confidence=0.5)
        cond = used[-1]
        assert isinstance(cond, ClassConditionalSampler) and cond.base is run.sampler
        assert cond.confidence == 0.5
        z = cond.sample(20, generator=torch.Generator().manual_seed(0))
        assert ((run.attribute.p_mask(z) > 0.5) == mask).all()


def test_one_class_draws_are_decoded_with_the_statistics_of_the_draws_they_are_cut_from(runs):
    # BN statistics of one class's draws alone would normalise away what sets the class apart
    run = load_run(runs["vae_unet"])
    stats = run.model.sampling_stats
    stats.clear()
    run.sample(4, seed=0, bn_batches=1)  # the run's own sampler, unconditionally
    (key,) = stats._cache
    own = stats._cache[key][1]
    assert key[0] == run.sampler.fingerprint
    stats.clear()
    for mask in (True, False):
        run.sample(4, seed=0, mask=mask, bn_batches=1, confidence=0.5)
        assert list(stats._cache) == [key]  # estimated once, on the base sampler's draws
        assert all(torch.equal(own[k], v) for k, v in stats._cache[key][1].items())


def test_deterministic_skips_are_not_codes_and_pass_through_an_edit():
    """vae_unet_det's encoder features are skips, not latents: the codes, the attribute and the
    edit cover the top latent only."""
    from pathlib import Path

    from facemask_vae.models import VAE
    from facemask_vae.run.attribute import fit_run_attribute
    from facemask_vae.run.files import training_codes
    from facemask_vae.run.loaded import LoadedRun

    model = VAE(image_size=32, widths=[8, 16, 16], latent_dim=8, skip="deterministic").eval()
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    codes = training_codes(model, images, lambda x: x.float() / 255, all_levels=True)
    assert codes.shape == (20, 8)
    run = LoadedRun("det", None, Path("det.ckpt"), None, model)
    run._attribute = fit_run_attribute(model, codes, torch.arange(20) % 2, False)
    on = run.edit(images[:3], mask=True)
    assert on.shape == (3, 3, 32, 32)
    assert torch.allclose(
        run.edit(images[:3], mask=True, strength=0.0),
        model.reconstruct(images[:3].float() / 255),
        atol=1e-6,
    )


def test_a_run_without_an_attribute_fits_one_on_first_use_and_a_tampered_one_is_refused(
    runs, tmp_path
):
    dst = _copy(runs["ae"], tmp_path, "old")
    (dst / FILE).unlink()
    with pytest.warns(UserWarning, match="fitting one now"):
        attr = load_run(dst).attribute
    assert (dst / FILE).is_file() and attr.probe_dim == load_run(dst).attribute.probe_dim
    (dst / FILE).write_bytes((dst / FILE).read_bytes()[:100])
    with pytest.raises(RunFileError, match=rf"{FILE}: not a readable attribute file"):
        _ = load_run(dst).attribute
    shutil.copy(runs["vae_unet"] / FILE, dst / FILE)  # another run's
    with pytest.raises(RunFileError, match="fitted to other weights"):
        _ = load_run(dst).attribute


def test_the_upper_face_ends_where_the_class_means_start_to_differ():
    """A difference of 0.02 in rows 0-9 and 0.1 below: the upper face is rows 0-9; the paste
    baseline keeps them and takes the target's mean below."""
    without = torch.zeros(3, 16, 8)
    with_mask = torch.zeros(3, 16, 8)
    with_mask[:, :10] = 0.02
    with_mask[:, 10:] = 0.1
    rows, diff = upper_face_rows(with_mask, without)
    assert rows == 10 and diff.shape == (16,)
    with pytest.raises(ValueError, match="differ most at the top"):
        upper_face_rows(without, with_mask.flip(1))
    x = torch.rand(2, 3, 16, 8)
    pasted = paste_lower_face(x, with_mask, rows)
    assert torch.equal(pasted[..., :10, :], x[..., :10, :])
    assert torch.equal(pasted[..., 10:, :], with_mask[..., 10:, :].expand(2, -1, -1, -1))


def test_an_attribute_saved_without_the_lower_face_cut_gets_it_once(runs, tmp_path):
    """An attribute.pt from before the cut: its probe and means are kept, the cut is added from
    the training images and saved, so the second load is silent."""
    import warnings

    from facemask_vae.run.files import save_state

    dst = _copy(runs["vae_unet"], tmp_path, "older")
    state = torch.load(dst / FILE, weights_only=True)
    del state["attribute"]["lower_start"]
    save_state({k: v for k, v in state.items() if k != "format"}, dst / FILE)
    with pytest.warns(UserWarning, match="predates the lower-face cut: added it"):
        attr = load_run(dst).attribute
    assert attr.lower_start is not None
    assert torch.equal(attr.weight, state["attribute"]["weight"])  # the probe is the old one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_run(dst).attribute.lower_start == pytest.approx(attr.lower_start)


def test_confidence_without_a_class_and_unknown_edits_are_refused_before_any_work(runs):
    run = load_run(runs["ae"])
    with pytest.raises(ValueError, match="pass mask=True or False"):
        run.sample(2, confidence=0.9)
    with pytest.raises(ValueError, match="confidence must lie in"):
        run.sample(2, mask=True, confidence=1.2)
    with pytest.raises(ValueError, match="region must be one of"):
        run.edit(torch.zeros(1, 3, 32, 32), mask=True, region="upper")
