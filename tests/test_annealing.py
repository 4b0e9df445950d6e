"""Each schedule's values at known steps, the callback, the PI controller and resume."""

import math

import pytest
import pytorch_lightning as pl
import torch

from facemask_vae.annealing import (
    Constant,
    ControlledKLAnnealing,
    Cyclic,
    KLAnnealing,
    Linear,
    PIController,
    Sigmoid,
)


def test_constant():
    assert Constant(4.0)(0) == 4.0 and Constant(4.0)(10**6) == 4.0


def test_linear_warmup_then_hold():
    s = Linear(warmup_steps=100, beta_min=0.0, beta_max=2.0)
    assert [s(0), s(25), s(50), s(100), s(1000)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert Linear(warmup_steps=0, beta_max=0.7)(0) == 0.7


def test_sigmoid_is_half_at_center_and_monotone():
    s = Sigmoid(center=500, steepness=0.01, beta_max=1.0)
    assert s(500) == pytest.approx(0.5)
    assert s(0) == pytest.approx(1 / (1 + math.exp(5)))
    values = [s(t) for t in range(0, 2000, 50)]
    assert values == sorted(values) and values[-1] > 0.99


def test_cyclic_ramps_then_holds_in_every_cycle():
    s = Cyclic(n_cycles=4, ratio=0.5, beta_max=1.0)
    total = 400  # cycles of 100 steps: ramp over 50, hold for 50
    assert [s(t, total) for t in (0, 25, 50, 75, 99)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert [s(t, total) for t in (100, 125, 150, 399)] == [0.0, 0.5, 1.0, 1.0]
    cos = Cyclic(n_cycles=1, ratio=1.0, ramp="cosine")
    assert cos(50, 100) == pytest.approx(0.5) and cos(25, 100) == pytest.approx(
        0.5 - 0.5 * math.cos(math.pi / 4)
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: Cyclic(n_cycles=0),
        lambda: Cyclic(ratio=0.0),
        lambda: Cyclic(ratio=1.5),
        lambda: Constant(-1.0),
        lambda: Constant(float("nan")),
        lambda: Linear(beta_max=float("inf")),
        lambda: Sigmoid(steepness=0.0),
        lambda: KLAnnealing(kind="exponential"),
    ],
)
def test_invalid_schedules_are_refused(make):
    with pytest.raises(ValueError, match="anneal"):
        make()


def test_pi_controller_raises_beta_when_kl_is_above_target_and_lowers_it_below():
    up = PIController(target_kl=10.0, kp=0.5, ki=0.01, beta_max=1.0)
    betas = [up.update(50.0) for _ in range(50)]
    assert betas[-1] > betas[0] and betas[-1] <= 1.0
    down = PIController(target_kl=10.0, kp=0.5, ki=0.01, beta_init=1.0)
    for _ in range(50):
        down.update(50.0)
    high = down.beta
    for _ in range(200):
        down.update(1.0)
    assert down.beta < high and down.beta >= 0.0
    state = down.state_dict()
    clone = PIController(target_kl=10.0, kp=0.5, ki=0.01)
    clone.load_state_dict(state)
    assert clone.update(5.0) == down.update(5.0)


class _Module:
    beta = None


class _Trainer:
    def __init__(self, step, total=400, per_epoch=100):
        self.global_step = step
        self.estimated_stepping_batches = total
        self.num_training_batches = per_epoch


def test_callback_sets_beta_from_global_step_so_resume_continues():
    cb = KLAnnealing(kind="cyclic", n_cycles=4, ratio=0.5)
    m = _Module()
    cb.on_fit_start(_Trainer(0), m)
    assert m.beta == 0.0
    # a run restored at step 125 is in the middle of the second cycle's ramp, not at step 0
    resumed = KLAnnealing(kind="cyclic", n_cycles=4, ratio=0.5)
    resumed.on_fit_start(_Trainer(125), m)
    assert m.beta == 0.5
    resumed.on_train_batch_start(_Trainer(150), m, None, 0)
    assert m.beta == 1.0


def test_warmup_epochs_are_converted_to_steps():
    cb = KLAnnealing(kind="linear", warmup_epochs=2, warmup_steps=999, beta_max=1.0)
    m = _Module()
    cb.on_fit_start(_Trainer(100, per_epoch=100), m)
    assert cb.schedule.warmup_steps == 200 and m.beta == 0.5


def test_controlled_callback_state_round_trips():
    cb = ControlledKLAnnealing(target_kl=10.0, kp=0.5, ki=0.01)
    for _ in range(20):
        cb.controller.update(100.0)
    other = ControlledKLAnnealing(target_kl=10.0, kp=0.5, ki=0.01)
    other.load_state_dict(cb.state_dict())
    assert other.controller.beta == cb.controller.beta
    assert isinstance(cb, pl.Callback)


class _LoggingTrainer:
    """What the controlled callback reads: the global step and the logged metrics."""

    def __init__(self, kl, key="train/kl_step"):
        self.global_step = 0
        self.callback_metrics = {key: torch.tensor(kl)}


def _drive(cb, trainer, module, steps):
    """A training loop's hook calls: beta applied before each step, the KL read after it."""
    cb.on_fit_start(trainer, module)
    seen = []
    for i in range(steps):
        cb.on_train_batch_start(trainer, module, None, i)
        seen.append(module.beta)
        trainer.global_step += 1  # the optimiser step, before on_train_batch_end
        cb.on_train_batch_end(trainer, module, None, None, i)
    return seen


@pytest.mark.parametrize(("kl", "rises"), [(50.0, True), (1.0, False)])
def test_controlled_callback_moves_beta_with_the_logged_kl(kl, rises):
    cb = ControlledKLAnnealing(target_kl=10.0, kp=0.5, ki=0.01, period=5, beta_init=0.5)
    m = _Module()
    seen = _drive(cb, _LoggingTrainer(kl), m, 30)
    assert seen[0] == 0.5 and m.beta == cb.controller.beta
    # the KL is read every 5 steps: beta changes only on the step after a multiple of 5
    changes = [i for i in range(1, 30) if seen[i] != seen[i - 1]]
    assert changes and set(changes) <= {5, 10, 15, 20, 25}
    if rises:  # KL above the target: more weight on the KL
        assert seen[-1] > 0.5 and seen == sorted(seen)
    else:
        assert seen[-1] < 0.5 and seen == sorted(seen, reverse=True)


def test_controlled_callback_warns_when_the_kl_is_not_logged():
    cb = ControlledKLAnnealing(target_kl=10.0, kp=0.5, ki=0.01, period=5, beta_init=0.5)
    m = _Module()
    with pytest.warns(UserWarning, match="train/kl_step.*beta stays at 0.5"):
        seen = _drive(cb, _LoggingTrainer(50.0, key="train/kl_per_step"), m, 30)
    assert set(seen) == {0.5}  # nothing to steer by: beta is held, and the user is told


def test_lengths_in_epochs_become_steps_for_the_run():
    linear = KLAnnealing(kind="linear", warmup_epochs=2, warmup_steps=1000).schedule_for(10)
    assert linear.warmup_steps == 20 and linear(10) == pytest.approx(0.5)
    sigmoid = KLAnnealing(kind="sigmoid", center_epochs=3, steepness=0.02).schedule_for(79)
    assert sigmoid.center == 237 and sigmoid(237) == pytest.approx(0.5)
