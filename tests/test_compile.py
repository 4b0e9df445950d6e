"""module.compile and module.compile_mode: validated at construction, passed to torch.compile.

Nothing here compiles for real (that takes minutes on a CPU, where compile is slower anyway):
nn.Module.compile (torch.compile in place, so the state dict keeps its keys) is replaced by a
recorder, so the tests pin what the training module asks torch for.
"""

from __future__ import annotations

import pytest
import torch

from facemask_vae.lit import TrainingModule
from facemask_vae.lit.module import COMPILE_MODES
from facemask_vae.models import AE, VAE

TINY = {"image_size": 16, "latent_dim": 4, "widths": [8, 8]}


@pytest.fixture
def compile_calls(monkeypatch):
    calls: list[tuple[torch.nn.Module, str | None]] = []

    def fake_compile(module, *, mode=None, **kwargs):  # nn.Module.compile: in place
        calls.append((module, mode))

    monkeypatch.setattr(torch.nn.Module, "compile", fake_compile)
    return calls


@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_every_compile_mode_reaches_torch_compile_for_encoder_and_decoder(compile_calls, mode):
    module = TrainingModule(VAE(**TINY, skip="variational"), compile=True, compile_mode=mode)
    model = module.model
    module.configure_model()
    assert [(m, md) for m, md in compile_calls] == [
        (model.encoder, mode),
        (model.decoder, mode),
    ]


def test_compile_off_calls_nothing_and_marks_no_cuda_graph_steps(compile_calls, monkeypatch):
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    module = TrainingModule(AE(**TINY))
    module.configure_model()
    module.on_train_batch_start(None, 0)
    assert compile_calls == [] and marks == []


@pytest.mark.parametrize(
    ("mode", "marked"),
    [(None, 0), ("default", 0), ("reduce-overhead", 1), ("max-autotune", 1)],
)
def test_cuda_graph_modes_mark_each_training_step(monkeypatch, mode, marked):
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    TrainingModule(VAE(**TINY), compile=True, compile_mode=mode).on_train_batch_start(None, 0)
    assert len(marks) == marked


@pytest.mark.parametrize("bad", ["fast", "reduce_overhead", "", "Default"])
def test_an_unknown_mode_is_refused_naming_the_key_and_the_choices(bad):
    with pytest.raises(ValueError, match=r"module\.compile_mode must be one of") as err:
        TrainingModule(VAE(**TINY), compile=True, compile_mode=bad)
    assert "reduce-overhead" in str(err.value) and repr(bad) in str(err.value)


def test_a_mode_without_compile_is_refused_not_ignored():
    with pytest.raises(ValueError, match=r"needs module\.compile=true"):
        TrainingModule(AE(**TINY), compile=False, compile_mode="reduce-overhead")


def test_compile_mode_defaults_to_torchs_own():
    assert TrainingModule(VAE(**TINY), compile=True).hparams.compile_mode is None


def test_compiling_in_place_keeps_the_checkpoint_keys():
    module = TrainingModule(AE(**TINY), compile=True)
    keys = set(module.state_dict())
    module.configure_model()  # the real torch.compile, lazily: nothing is compiled until a call
    assert set(module.state_dict()) == keys and not any("_orig_mod" in k for k in keys)
