"""A second VAE fitted to a trained model's codes (two-stage VAE, Dai & Wipf 2019): where a
Gaussian mixture has too few points per component to place its covariances in many dimensions,
a small MLP VAE learns the codes' density and maps N(0, I) onto it.

The second stage sees the codes centred and divided by one overall scale (per-dimension scaling
would give an inactive unit's noise the same weight in its loss as a unit that carries the face)
and learns its own observation noise (a scalar gamma). Dai & Wipf show that this lets its
aggregate posterior match N(0, I) when its latent is as wide as the codes; here it is narrower
(64 of 448 at the defaults), so that is an approximation. Drawing at temperature T decodes
u ~ N(0, T^2 I) to the mean of p(z | u): T scales the second stage's prior, not the codes'
spread directly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from facemask_vae.gaussian import LOG_2PI, kl_std_normal, reparameterize
from facemask_vae.sampling.samplers import LatentSampler, State, _randn

#: the second stage's observation noise variance may not fall below this (in scaled units):
#: a perfect fit would drive it to 0 and the loss to minus infinity (Dai & Wipf, section 4).
#: Below the floor log gamma gets no gradient, so gamma stays at the floor from then on.
MIN_GAMMA = 1e-3
#: the second stage's posterior log-variance is clamped to this range. Unbounded, it diverged on
#: the default U-Net VAE's 5,568-d codes at seed 1: a few log-variances ran to -600 within 8
#: epochs, then one to +65 (its exp, 2.6e28, in the loss), the next epoch's loss was NaN, and
#: every draw was NaN (results 6i; scripts/two_stage_fit_log.py --no-clamp shows it). With the
#: clamp that fit stays finite; the lower bound is the one it reached. A value beyond the range
#: gets no gradient (its KL term is capped there). Inside the range the clamp is the identity,
#: so a fit that never reaches it is unchanged.
LOGVAR_RANGE = (-30.0, 20.0)
#: the second VAE's size and training length unless the caller says otherwise (eval's defaults too)
DEFAULTS = {"latent_dim": 64, "hidden": 256, "epochs": 100}


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])  # no activation on the output


class SecondStage(nn.Module):
    """An MLP VAE over D-dimensional scaled codes: encoder D -> 2d, decoder d -> D, both with
    two hidden layers, and a learned scalar observation variance gamma."""

    def __init__(self, dim: int, latent_dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.encoder = _mlp([dim, hidden, hidden, 2 * latent_dim])
        self.decoder = _mlp([latent_dim, hidden, hidden, dim])
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def gamma(self) -> torch.Tensor:
        return self.log_gamma.exp().clamp(min=MIN_GAMMA)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(u | x) for scaled codes x (N x D): its mean and log-variance (N x d each), the
        log-variance clamped to ``LOGVAR_RANGE``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per code (x: N x D, centred and scaled), averaged over the batch, in nats."""
        mu, logvar = self.posterior(x)
        u = reparameterize(mu, logvar)
        gamma = self.gamma()
        rec = ((x - self.decoder(u)) ** 2).sum(1) / (2 * gamma)
        rec = rec + 0.5 * x.shape[1] * (gamma.log() + LOG_2PI)
        kl = kl_std_normal(mu, logvar).sum(1)
        return (rec + kl).mean()


class TwoStageSampler(LatentSampler):
    """Codes z = mean + scale * decoder(u), u ~ N(0, T^2 I): a second VAE's samples, scaled back.

    ``fit`` trains the second VAE (:func:`train_second_stage`) with these options, seeded."""

    kind = "two_stage"

    def __init__(
        self,
        latent_dim: int = DEFAULTS["latent_dim"],
        hidden: int = DEFAULTS["hidden"],
        epochs: int = DEFAULTS["epochs"],
        seed: int = 0,
        all_levels: bool = False,
        batch_size: int = 256,
        lr: float = 1e-3,
    ) -> None:
        super().__init__(all_levels)
        if latent_dim < 1 or hidden < 1 or epochs < 1:
            raise ValueError(
                f"two_stage needs latent_dim, hidden and epochs >= 1, got {latent_dim}, {hidden}, {epochs}"
            )
        self.latent_dim, self.hidden, self.epochs = int(latent_dim), int(hidden), int(epochs)
        self.seed, self.batch_size, self.lr = int(seed), int(batch_size), float(lr)
        self.stage: SecondStage | None = None
        self.mean = self.std = torch.empty(0)
        self.fit_loss: list[float] = []  # training loss per epoch, for a look at convergence
        self._on_batch: Callable[[int, SecondStage, torch.Tensor, torch.Tensor], None] | None = None

    def fit(
        self,
        codes: torch.Tensor,
        on_batch: Callable[[int, SecondStage, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> TwoStageSampler:
        """Train the second VAE on ``codes`` (N x D); ``on_batch`` as in :func:`train_second_stage`."""
        self._on_batch = on_batch
        try:
            return super().fit(codes)  # type: ignore[return-value]
        finally:
            self._on_batch = None

    def _fit(self, codes: torch.Tensor) -> None:
        stage, mean, std, losses = train_second_stage(
            codes,
            self.latent_dim,
            self.hidden,
            self.epochs,
            self.batch_size,
            self.lr,
            self.seed,
            self._on_batch,
        )
        self.stage, self.mean, self.std, self.fit_loss = stage.eval().float(), mean, std, losses

    def _state(self) -> State:
        assert self.stage is not None
        return {
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "mean": self.mean.cpu(),
            "std": self.std.cpu(),
            "stage": {k: v.cpu() for k, v in self.stage.state_dict().items()},
            "fit_loss": torch.tensor(self.fit_loss, dtype=torch.float64),
        }

    def _load(self, state: State) -> None:
        self.latent_dim, self.hidden = int(state["latent_dim"]), int(state["hidden"])
        stage = SecondStage(int(state["dim"]), self.latent_dim, self.hidden)
        stage.load_state_dict(state["stage"])
        self.stage = stage.eval().float()
        self.mean, self.std = state["mean"].float(), state["std"].float()
        self.fit_loss = [float(v) for v in state["fit_loss"]]

    @torch.no_grad()
    def sample(self, n, temperature=1.0, generator=None, device=None) -> torch.Tensor:
        if self.stage is None:
            raise ValueError("the two_stage sampler is not fitted")
        u = _randn(n, self.stage.latent_dim, generator, device) * temperature
        if self.mean.device != u.device:
            self.stage, self.mean, self.std = (
                t.to(u.device) for t in (self.stage, self.mean, self.std)
            )
        return self.mean + self.std * self.stage.decoder(u)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name}, dim={self.dim}, latent_dim={self.latent_dim})"
        )


def fit_two_stage(
    z: torch.Tensor,
    latent_dim: int = DEFAULTS["latent_dim"],
    hidden: int = DEFAULTS["hidden"],
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    on_batch: Callable[[int, SecondStage, torch.Tensor, torch.Tensor], None] | None = None,
    all_levels: bool = False,
) -> TwoStageSampler:
    """A :class:`TwoStageSampler` fitted to codes ``z`` (N x D)."""
    sampler = TwoStageSampler(latent_dim, hidden, epochs, seed, all_levels, batch_size, lr)
    return sampler.fit(z, on_batch=on_batch)


def train_second_stage(
    z: torch.Tensor,
    latent_dim: int,
    hidden: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    on_batch: Callable[[int, SecondStage, torch.Tensor, torch.Tensor], None] | None = None,
) -> tuple[SecondStage, torch.Tensor, torch.Tensor, list[float]]:
    """A second VAE trained on codes ``z`` (N x D) with AdamW and a cosine learning rate, seeded:
    the same codes and seed give the same network; returns it with the codes' centre, scale and
    the loss per epoch. ``on_batch(epoch, stage, x, loss)``, if given,
    sees each scaled batch and its loss before the step (scripts/two_stage_fit_log.py); it must
    not draw random numbers, or the fit changes."""
    if len(z) < 2:
        raise ValueError(f"a second-stage VAE needs more than {len(z)} codes")
    z = z.detach().float().cpu()
    mean = z.mean(0)
    std = z.var(0).mean().sqrt().clamp(min=1e-6).expand_as(mean)  # one scale for every dimension
    x = (z - mean) / std
    with torch.random.fork_rng(devices=[]):  # the caller's CPU RNG is left as it was
        torch.random.default_generator.manual_seed(seed)  # CPU only: the fit runs on the CPU
        stage = SecondStage(z.shape[1], latent_dim, hidden)
        opt = torch.optim.AdamW(stage.parameters(), lr=lr, weight_decay=0.0)
        steps_per_epoch = math.ceil(len(x) / batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
        losses = []
        bar = tqdm(range(epochs), desc="two-stage fit", unit="epoch", leave=False, disable=None)
        for epoch in bar:
            total = 0.0
            for idx in torch.randperm(len(x)).split(batch_size):
                batch = x[idx]
                loss = stage.loss(batch)
                if on_batch is not None:
                    on_batch(epoch, stage, batch, loss.detach())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            losses.append(total / len(x))
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
            if not math.isfinite(losses[-1]):  # a diverged fit would only draw NaN codes
                raise RuntimeError(
                    f"the second-stage VAE diverged in epoch {len(losses)} of {epochs} (loss "
                    f"{losses[-1]}; the last finite epochs: {losses[-4:-1]}) on {tuple(z.shape)} "
                    "codes, so its draws would be NaN; leave the two_stage samplers out for this run"
                )
    return stage, mean, std, losses
