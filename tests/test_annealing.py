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
    steps_from_epochs,
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


def test_linear_warmup_starts_at_beta_min():
    s = Linear(warmup_steps=100, beta_min=0.5, beta_max=2.5)
    assert [s(0), s(50), s(100), s(500)] == [0.5, 1.5, 2.5, 2.5]


def test_cyclic_holds_beta_max_from_the_last_step_on():
    # step == total_steps is the start of a fifth cycle by the modulo, but the run is over:
    # beta stays at the top of the fourth cycle's ramp
    s = Cyclic(n_cycles=4, ratio=0.5, beta_max=2.0)
    assert [s(399, 400), s(400, 400), s(450, 400)] == [2.0, 2.0, 2.0]


# each message names the setting to fix
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Cyclic(n_cycles=0), "anneal.n_cycles"),
        (lambda: Cyclic(ratio=0.0), "anneal.ratio"),
        (lambda: Cyclic(ratio=1.5), "anneal.ratio"),
        (lambda: Cyclic(beta_max=-1.0), "anneal.beta_max"),
        (lambda: Cyclic(ramp="exp"), "anneal.ramp must be 'linear' or 'cosine'"),
        (lambda: Cyclic()(0, None), "total number of steps"),
        (lambda: Constant(-1.0), r"anneal\.beta must"),
        (lambda: Constant(float("nan")), r"anneal\.beta must"),
        (lambda: Linear(beta_min=-0.1), "anneal.beta_min"),
        (lambda: Linear(beta_max=float("inf")), "anneal.beta_max"),
        (lambda: Linear(warmup_steps=-1), "anneal.warmup_steps"),
        (lambda: Sigmoid(beta_max=-1.0), "anneal.beta_max"),
        (lambda: Sigmoid(steepness=0.0), "anneal.steepness"),
        (lambda: KLAnnealing(kind="exponential"), "anneal.kind"),
        (lambda: PIController(target_kl=0.0), "anneal.target_kl"),
        (lambda: PIController(target_kl=float("inf")), "anneal.target_kl"),
        (lambda: PIController(target_kl=10.0, beta_min=-1.0), "anneal.beta_min"),
        (lambda: PIController(target_kl=10.0, beta_max=-1.0), "anneal.beta_max"),
        (lambda: PIController(target_kl=10.0, beta_init=-1.0), "anneal.beta_init"),
        (lambda: ControlledKLAnnealing(target_kl=10.0, period=0), "anneal.period"),
    ],
)
def test_invalid_schedules_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_smallest_valid_settings_are_accepted():
    assert PIController(target_kl=0.5).target_kl == 0.5
    assert ControlledKLAnnealing(target_kl=10.0, period=1).period == 1


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


def test_pi_controller_steps_with_its_default_gains():
    # defaults kp = 0.01, ki = 1e-4, beta in [0, 1] from 0. A KL 1000 nats above the target
    # saturates the P term at kp; the I term adds ki * 1000 = 0.1 per reading
    c = PIController(target_kl=10.0)
    assert c.beta == 0.0
    betas = [c.update(1010.0) for _ in range(12)]
    expected = [0.01 + 0.1 * n for n in range(10)] + [1.0, 1.0]  # 1.01 is clipped to beta_max
    assert betas == pytest.approx(expected)


def test_pi_controller_p_term_is_half_the_gain_at_the_target():
    # e = 0: P = kp / (1 + e^0) = kp / 2, on top of beta_min; the integral does not move
    c = PIController(target_kl=10.0, kp=0.2, ki=0.5, beta_min=0.1)
    assert [c.update(10.0), c.update(10.0)] == pytest.approx([0.2, 0.2])
    assert c.integral == 0.0


def test_pi_controller_integrates_on_both_bounds_of_beta():
    # no P term: beta = beta_min - I, with I += ki * (target - KL) = -0.5 per reading
    c = PIController(target_kl=10.0, kp=0.0, ki=0.1, beta_min=0.0, beta_max=1.0)
    betas = [c.update(15.0) for _ in range(4)]
    # beta = 0 (= beta_min) and beta = 1 (= beta_max) still integrate; 1.5 is past the top
    assert betas == [0.0, 0.5, 1.0, 1.0]
    assert c.integral == pytest.approx(-1.5)
    c.update(9.5)  # past the top, but a KL below the target brings beta back: integrate
    assert c.integral == pytest.approx(-1.45)
    low = PIController(target_kl=10.0, kp=0.0, ki=0.1)
    assert [low.update(5.0), low.update(5.0)] == [0.0, 0.0]
    assert low.integral == pytest.approx(0.5)  # integrated at beta = 0, not below it
    low.update(9.5)  # below the bottom and pushed further down: hold
    assert low.integral == pytest.approx(0.5)


def test_pi_controller_saturated_at_beta_max_comes_back_when_the_kl_drops():
    # the integral winds past beta_max while the KL is far above the target; once the KL is
    # below the target, beta must come down (regression: the integral froze while beta sat at
    # beta_max, so beta stayed there for the rest of the run)
    c = PIController(target_kl=100.0, kp=0.01, ki=0.0001)
    for _ in range(200):
        c.update(1000.0)
    assert c.beta == 1.0
    betas = [c.update(50.0) for _ in range(400)]
    assert betas[-1] == 0.0 and betas == sorted(betas, reverse=True)
    # and symmetrically from beta_min: a KL above the target raises it again
    betas = [c.update(150.0) for _ in range(400)]
    assert betas[-1] > 0.5


def test_steps_from_epochs():
    assert steps_from_epochs(None, 50) is None
    assert steps_from_epochs(2.5, 10) == 25 and steps_from_epochs(0.26, 10) == 3


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


class _StepTrainer:
    """What the controlled callback reads of the trainer: the global step."""

    def __init__(self):
        self.global_step = 0


def _drive(cb, trainer, module, steps, kl=None, outputs=None):
    """A training loop's hook calls: beta applied before each step, the step's KL (what the
    training step returns, ``outputs["kl"]``) read after it."""
    cb.on_fit_start(trainer, module)
    seen = []
    for i in range(steps):
        cb.on_train_batch_start(trainer, module, None, i)
        seen.append(module.beta)
        trainer.global_step += 1  # the optimiser step, before on_train_batch_end
        out = (
            outputs if outputs is not None else {"loss": torch.tensor(1.0), "kl": torch.tensor(kl)}
        )
        cb.on_train_batch_end(trainer, module, out, None, i)
    return seen


@pytest.mark.parametrize(("kl", "rises"), [(50.0, True), (1.0, False)])
def test_controlled_callback_moves_beta_with_the_steps_kl(kl, rises):
    cb = ControlledKLAnnealing(target_kl=10.0, kp=0.5, ki=0.01, period=5, beta_init=0.5)
    m = _Module()
    seen = _drive(cb, _StepTrainer(), m, 30, kl)
    assert seen[0] == 0.5 and m.beta == cb.controller.beta
    # the KL is read every 5 steps: beta changes only on the step after a multiple of 5
    changes = [i for i in range(1, 30) if seen[i] != seen[i - 1]]
    assert changes and set(changes) <= {5, 10, 15, 20, 25}
    if rises:  # KL above the target: more weight on the KL
        assert seen[-1] > 0.5 and seen == sorted(seen)
    else:
        assert seen[-1] < 0.5 and seen == sorted(seen, reverse=True)


def test_controlled_callback_refuses_a_step_without_its_kl():
    cb = ControlledKLAnnealing(target_kl=10.0, kp=0.5, ki=0.01, period=5, beta_init=0.5)
    with pytest.raises(TypeError, match=r"outputs\['kl'\]"):
        _drive(cb, _StepTrainer(), _Module(), 30, outputs=torch.tensor(1.0))


def test_lengths_in_epochs_become_steps_for_the_run():
    linear = KLAnnealing(kind="linear", warmup_epochs=2, warmup_steps=1000).schedule_for(10)
    assert linear.warmup_steps == 20 and linear(10) == pytest.approx(0.5)
    sigmoid = KLAnnealing(kind="sigmoid", center_epochs=3, steepness=0.02).schedule_for(79)
    assert sigmoid.center == 237 and sigmoid(237) == pytest.approx(0.5)


def test_callback_defaults_to_a_linear_warmup_named_after_its_schedule():
    cb = KLAnnealing()
    assert isinstance(cb.schedule, Linear) and cb.beta_at(500) == 0.5  # 1000 warm-up steps
    assert cb.state_dict() == {"name": "linear"}
    assert KLAnnealing(kind="constant", beta=4.0, name="beta4").state_dict() == {"name": "beta4"}


def test_callback_without_epoch_lengths_runs_on_an_iterable_of_unknown_length():
    cb = KLAnnealing(kind="linear", warmup_steps=100)
    m = _Module()
    cb.on_fit_start(_Trainer(50, per_epoch=float("inf")), m)
    assert m.beta == 0.5
    with_epochs = KLAnnealing(kind="linear", warmup_epochs=1)
    with pytest.raises(ValueError, match="finite number of batches"):
        with_epochs.on_fit_start(_Trainer(0, per_epoch=float("inf")), m)


def test_epoch_lengths_with_a_single_batch_per_epoch():
    cb = KLAnnealing(kind="linear", warmup_epochs=3)
    cb.on_fit_start(_Trainer(0, per_epoch=1), _Module())
    assert cb.schedule.warmup_steps == 3


def test_an_epoch_length_applies_only_to_the_schedule_that_has_it():
    linear = KLAnnealing(kind="linear", center_epochs=2, warmup_steps=50).schedule_for(10)
    assert linear.warmup_steps == 50
    sigmoid = KLAnnealing(kind="sigmoid", warmup_epochs=2, center=300).schedule_for(10)
    assert sigmoid.center == 300


def test_controlled_callback_defaults():
    cb = ControlledKLAnnealing(target_kl=10.0, kp=0.5, ki=0.01, beta_init=0.25)
    assert cb.kind == "controlled" and cb.state_dict()["name"] == "controlled"
    m = _Module()
    cb.on_fit_start(_StepTrainer(), m)
    assert m.beta == 0.25  # set before the first batch (e.g. for the sanity check)
    seen = _drive(cb, _StepTrainer(), m, 25, 50.0)
    # the KL is read every 10 steps by default
    assert [i for i in range(1, 25) if seen[i] != seen[i - 1]] == [10, 20]


def test_controlled_callback_skips_a_non_finite_kl():
    cb = ControlledKLAnnealing(target_kl=10.0, period=1, beta_init=0.5)
    _drive(cb, _StepTrainer(), _Module(), 5, float("nan"))
    assert cb.controller.beta == 0.5  # a NaN KL is not fed to the controller
