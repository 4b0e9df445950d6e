"""The results tables of README.md, docs/results.md and docs/longer_training.md: which report,
run and key fills each cell.

Files are relative to docs/results/. scripts/results_tables.py renders these; a table that names
a value its report does not hold fails with the file, run and key.
"""

from results_tables import One, Pair, Row, Seeds, Table, Text

AVV = "ae_vs_vae/metrics.json"  # section 1 of the notebook: the four models at seed 42
SEEDS = "seeds.json"  # the training's own test metrics, seeds 42, 1 and 2
MODELS4 = (("AE", "ae"), ("VAE", "vae-linear"), ("U-Net VAE", "vae_unet-linear"))
DET = ("U-Net VAE, deterministic skips", "vae_unet_det-linear")


def _row(label: str, file: str, runs: tuple[str | None, ...], key: str, fmt: str, scale=1.0):
    return (label, tuple(One(file, r, key, fmt, scale) if r else Text() for r in runs))


_RUNS = tuple(r for _, r in (*MODELS4, DET))
_HEAD = ("", *(n for n, _ in (*MODELS4, DET)))

# -- the seed's questions ---------------------------------------------------------------------

RECONSTRUCTION = Table(
    _HEAD,
    (
        _row("PSNR (dB), seed 42", AVV, _RUNS, "recon.psnr", ".2f"),
        _row("SSIM, seed 42", AVV, _RUNS, "recon.ssim", ".3f"),
        (
            "PSNR (dB) as training logs it, 3 seeds",
            tuple(Seeds(((SEEDS, r),), "test/psnr", ".2f") for r in _RUNS),
        ),
    ),
)

# the best fitted sampler of each model, three seeds (seed 42 chose the sampler and temperature)
BEST_SAMPLER = {
    "vae": Seeds(
        (
            ("samples_vae_gmm30/metrics.json", "vae-linear"),
            ("seeds_vae_gmm30/metrics.json", "vae_s1"),
            ("seeds_vae_gmm30/metrics.json", "vae_s2"),
        ),
        "samples.fid_best",
    ),
    "unet": Seeds(
        (
            ("samples_unet_two_stage/metrics.json", "vae_unet-linear"),
            ("seeds_unet_two_stage/metrics.json", "unet_s1"),
            ("seeds_unet_two_stage/metrics.json", "unet_s2"),
        ),
        "samples.fid_best",
    ),
    "coarse": Seeds(
        (
            ("samples_two_stage/metrics.json", "unet_sl01"),
            ("seeds_coarse_two_stage/metrics.json", "unet_sl01_s1"),
            ("seeds_coarse_two_stage/metrics.json", "unet_sl01_s2"),
        ),
        "samples.fid_best",
    ),
}

SAMPLES = Table(
    ("", "AE", "VAE", "U-Net VAE", "U-Net VAE, coarse latents", "real images"),
    (
        (
            "FID, N(0, I) prior, seed 42",
            (
                One(AVV, "ae", "samples.fid", ".0f"),
                One(AVV, "vae-linear", "samples.fid", ".0f"),
                One(AVV, "vae_unet-linear", "samples.fid", ".0f"),
                One("samples_two_stage/metrics.json", "unet_sl01", "samples.fid", ".0f"),
                One(AVV, "data (reference)", "samples.fid", ".0f"),
            ),
        ),
        (
            "FID, best fitted sampler, 3 seeds (AE: seed 42)",
            (
                One(AVV, "ae", "samples.fid_fitted", ".0f"),
                BEST_SAMPLER["vae"],
                BEST_SAMPLER["unet"],
                BEST_SAMPLER["coarse"],
                Text(),
            ),
        ),
        (
            "that sampler",
            (
                Text("`gaussian`, T 1 (seed 42 only)"),
                Text("`gmm`, 30 comp., T 0.6"),
                Text("`two_stage_all`, T 1"),
                Text("`two_stage_all`, T 1"),
                Text(),
            ),
        ),
    ),
)

LATENT = Table(
    _HEAD,
    (
        _row("k-NN accuracy, mask vs not (k = 5)", AVV, _RUNS, "latent.knn", ".3f"),
        _row("silhouette of the two classes", AVV, _RUNS, "latent.silhouette", ".3f"),
    ),
)

INTERPOLATION = Table(
    _HEAD,
    (
        _row("largest / mean step, pixels", AVV, _RUNS, "interp.linear.pixel_ratio", ".2f"),
        _row("largest / mean step, CNN features", AVV, _RUNS, "interp.linear.cnn_ratio", ".2f"),
    ),
)

PROBES = Table(
    (*_HEAD, "pixels"),
    (
        _row("linear probe", AVV, (*_RUNS, "data (reference)"), "probe.logreg.accuracy", ".3f"),
        _row("MLP probe", AVV, (*_RUNS, "data (reference)"), "probe.mlp.accuracy", ".3f"),
        (
            "CNN trained on the images (reference)",
            (*(Text() for _ in _RUNS), One(AVV, "data (reference)", "probe.cnn.accuracy")),
        ),
    ),
)

CURVES = Table(
    _HEAD,
    (
        _row("final training loss (nats/image)", AVV, _RUNS, "train.train_loss", ",.0f"),
        _row("final validation loss", AVV, _RUNS, "train.val_loss", ",.0f"),
        _row("best validation loss", AVV, _RUNS, "train.best_val_loss", ",.0f"),
    ),
)

# -- beyond the seed's list -------------------------------------------------------------------

_VAES = ("vae-linear", "vae_unet-linear", "vae_unet_det-linear")
UNET = Table(
    ("", "VAE", "U-Net VAE", "U-Net VAE, deterministic skips"),
    (
        _row("-log p(x), IWAE k = 32 (bits/dim, 8-bit)", AVV, _VAES, "recon.iwae_bpd8", ".2f"),
        _row("KL (nats/image; deterministic skips: top only)", AVV, _VAES, "recon.kl", ",.0f"),
        _row(
            "share of the KL in the top latent",
            AVV,
            (None, "vae_unet-linear", None),
            "skips.kl_top_share",
            ".1%",
        ),
        _row(
            "swap test: output change carried by the skips",
            AVV,
            (None, "vae_unet-linear", "vae_unet_det-linear"),
            "skips.swap_skips",
            ".2f",
        ),
    ),
)

_SWEEP = "anneal_sweep/metrics.json"
_SCHEDULES = (
    ("constant", "vae_unet-constant"),
    ("linear (default)", "vae_unet-linear"),
    ("sigmoid", "vae_unet-sigmoid"),
    ("cyclic", "vae_unet-cyclic"),
    ("controlled (PI, KL 100)", "vae_unet-controlled"),
    ("beta = 4 (`beta_vae`)", "vae_unet-beta4.0"),
)
_SCHEDULE_ROWS = tuple(
    (
        name,
        (
            One(_SWEEP, run, "recon.neg_elbo", ",.0f"),
            One(_SWEEP, run, "recon.psnr", ".2f"),
            One(_SWEEP, run, "recon.iwae_bpd8", ".3f"),
            One(_SWEEP, run, "recon.kl", ",.0f"),
            One(_SWEEP, run, "skips.kl_top_share", ".1%"),
        ),
    )
    for name, run in _SCHEDULES
)
ANNEALING = Table(
    (
        "schedule",
        "negative ELBO (nats)",
        "PSNR (dB)",
        "IWAE (bits/dim)",
        "KL (nats)",
        "top-latent KL",
    ),
    (
        *_SCHEDULE_ROWS,
        (
            "linear, 3 seeds (noise floor; as training logs it)",
            (
                Seeds(((SEEDS, "vae_unet-linear"),), "test/elbo", ",.0f", scale=-1.0),
                Seeds(((SEEDS, "vae_unet-linear"),), "test/psnr", ".2f"),
                Text(),
                Seeds(((SEEDS, "vae_unet-linear"),), "test/kl", ",.0f"),
                Text(),
            ),
        ),
    ),
)

_ARCH = "arch/metrics.json"
_ADV = "adversarial/metrics.json"
STRATEGIES = Table(
    ("U-Net VAE, seed 42", "negative ELBO (nats)", "PSNR (dB)", "domain FD, prior samples"),
    tuple(
        (
            name,
            (
                One(file, run, "recon.neg_elbo", ",.0f"),
                One(file, run, "recon.psnr", ".2f"),
                One(file, run, "samples.fd_cnn", ".2f"),
            ),
        )
        for name, file, run in (
            ("baseline (plain blocks, flip augmentation)", _ARCH, "2_vae_unet-linear"),
            ("residual blocks", _ARCH, "resnet_blocks"),
            ("no augmentation", _ARCH, "no_augment"),
            ("beta = 4", _SWEEP, "vae_unet-beta4.0"),
        )
    ),
)

ADVERSARIAL = Table(
    ("seed 42", "PSNR (dB)", "FID, N(0, I) prior", "FID, fitted Gaussian"),
    (
        (
            "AE",
            (
                One(_ADV, "ae", "recon.psnr", ".2f"),
                One(_ADV, "ae", "samples.fid", ".0f"),
                One(_ADV, "ae", "samples.fid_fitted", ".0f"),
            ),
        ),
        (
            "AAE",
            (
                One(_ADV, "aae", "recon.psnr", ".2f"),
                One(_ADV, "aae", "samples.fid", ".0f"),
                One(_ADV, "aae", "samples.fid_fitted", ".0f"),
            ),
        ),
        (
            "VAE",
            (
                One(_ADV, "vae-linear", "recon.psnr", ".2f"),
                One(_ADV, "vae-linear", "samples.fid", ".0f"),
                Text(),
            ),
        ),
        (
            "VAE-GAN (weight 0.1)",
            (
                One(_ADV, "vae_gan-linear", "recon.psnr", ".2f"),
                One(_ADV, "vae_gan-linear", "samples.fid", ".0f"),
                Text(),
            ),
        ),
    ),
)

_CO = "unet_sl01"
SAMPLERS = Table(
    ("U-Net VAE, coarse latents", "FID, seed 42", "FID, 3 seeds"),
    (
        (
            "N(0, I) prior",
            (One("samples_two_stage/metrics.json", _CO, "samples.fid", ".1f"), Text()),
        ),
        (
            "`gmm_all`, 10 components, T 0.6",
            (One("samples_skip_levels/metrics.json", _CO, "samples.fid_best", ".1f"), Text()),
        ),
        (
            "`gmm_all`, 30 components, T 0.3",
            (
                One("samples_gmm30_lowT/metrics.json", _CO, "samples.fid_best", ".1f"),
                Seeds(
                    (
                        ("samples_gmm30_lowT/metrics.json", _CO),
                        ("seeds_coarse_gmm_all_T03/metrics.json", "unet_sl01_s1"),
                        ("seeds_coarse_gmm_all_T03/metrics.json", "unet_sl01_s2"),
                    ),
                    "samples.fid_best",
                ),
            ),
        ),
        (
            "`two_stage_all`, T 1 (the run's sampler)",
            (
                One("samples_two_stage/metrics.json", _CO, "samples.fid_best", ".1f"),
                BEST_SAMPLER["coarse"],
            ),
        ),
    ),
)

_PA = "probe_aug/metrics.json"
_SHIFTS = ("none", "zoom_out", "off_centre", "blur", "jpeg", "colour", "grayscale", "mean")
SHIFTS = Table(
    (
        "linear probe accuracy",
        "unshifted",
        "zoom-out",
        "off-centre",
        "blur",
        "JPEG",
        "colour",
        "grayscale",
        "mean of shifts",
    ),
    tuple(
        (
            label,
            tuple(
                One(
                    _PA,
                    run,
                    f"shift.{s}.{probe}"
                    if s != "none" or probe == "probe_aug"
                    else "probe.logreg.accuracy",
                )
                for s in _SHIFTS
            ),
        )
        for label, run, probe in (
            ("VAE, plain probe", "vae-linear", "probe"),
            ("VAE, probe fitted with zoomed-out copies", "vae-linear", "probe_aug"),
            ("U-Net VAE, plain probe", "vae_unet-linear", "probe"),
            ("U-Net VAE, probe fitted with zoomed-out copies", "vae_unet-linear", "probe_aug"),
        )
    ),
)

TABLES = {
    "reconstruction": RECONSTRUCTION,
    "samples": SAMPLES,
    "latent": LATENT,
    "interpolation": INTERPOLATION,
    "probes": PROBES,
    "curves": CURVES,
    "unet": UNET,
    "annealing": ANNEALING,
    "strategies": STRATEGIES,
    "adversarial": ADVERSARIAL,
    "samplers": SAMPLERS,
    "shifts": SHIFTS,
}

# -- the README's headline and section 11: one report of the four headline runs ---------------

HL = "headline/metrics.json"  # 10-epoch runs, seed 42, 2-core AMD EPYC, float32
_HL_RUNS = ("ae", "vae-linear", "vae_unet-linear", "vae_unet_coarse-linear")
_HL_HEAD = ("", "AE", "VAE", "U-Net VAE", "U-Net VAE, coarse latents")


def _hl_row(label: str, key: str, fmt: str, skip: tuple[int, ...] = ()) -> tuple:
    cells = tuple(Text() if i in skip else One(HL, r, key, fmt) for i, r in enumerate(_HL_RUNS))
    return (label, cells)


def _both(file: str, run: str, a: str, b: str) -> Pair:
    return Pair(One(file, run, a, ".0%"), One(file, run, b, ".0%"))


HEADLINE = Table(
    _HL_HEAD,
    (
        _hl_row("PSNR (dB)", "recon.psnr", ".2f"),
        _hl_row("-log p(x), IWAE k = 32 (bits/dim, 8-bit)", "recon.iwae_bpd8", ".2f", skip=(0,)),
        _hl_row("FID, N(0, I) prior", "samples.fid", ".0f"),
        _hl_row("FID, the run's own sampler", "samples.fid_best", ".0f"),
        (
            "FID, best fitted sampler, 3 seeds (notebook)",
            (Text(), BEST_SAMPLER["vae"], BEST_SAMPLER["unet"], BEST_SAMPLER["coarse"]),
        ),
        _hl_row("mask from the latent: linear probe", "probe.logreg.accuracy", ".3f"),
        _hl_row("edit, mask put on: flipped", "edit.flip_on", ".0%"),
        _hl_row("edit, mask taken off: flipped", "edit.flip_off", ".0%"),
        (
            "one-class samples, right class: mask / no mask",
            tuple(_both(HL, r, "cond.acc_mask", "cond.acc_nomask") for r in _HL_RUNS),
        ),
    ),
)


#: the headline report before one-class draws took their base sampler's BN statistics
OWN_BN = "editing_own_bn/metrics.json"


def _hl_edit_pair(label: str, a: str, b: str, fmt: str) -> tuple:
    """A row of "a / b" cells (mask on / off, or two sample sets), the pasted baseline last."""
    cells = [Pair(One(HL, r, a, fmt), One(HL, r, b, fmt)) for r in _HL_RUNS]
    if a.startswith("edit.psnr"):
        cells.append(Text("unchanged"))  # the baseline keeps the upper face exactly
    elif a.startswith("edit."):
        ref = "data (reference)"
        cells.append(Pair(One(HL, ref, a, fmt), One(HL, ref, b, fmt)))
    else:
        cells.append(Text())
    return (label, tuple(cells))


EDITING = Table(
    (*_HL_HEAD, "pasted mean lower face"),
    (
        _hl_edit_pair("mask on / off: flipped", "edit.flip_on", "edit.flip_off", ".0%"),
        _hl_edit_pair(
            "upper-face PSNR, on / off (dB)", "edit.psnr_upper_on", "edit.psnr_upper_off", ".1f"
        ),
        (
            "upper-face PSNR of the reconstruction (dB)",
            (*(One(HL, r, "edit.psnr_upper_recon", ".1f") for r in _HL_RUNS), Text()),
        ),
        _hl_edit_pair("FID of the edits, on / off", "edit.fid_on", "edit.fid_off", ".0f"),
        _hl_edit_pair(
            "one-class samples (P > 0.99), right class: mask / no mask",
            "cond.acc_mask",
            "cond.acc_nomask",
            ".0%",
        ),
        (
            "the same, own BN statistics (before)",
            (*(_both(OWN_BN, r, "cond.acc_mask", "cond.acc_nomask") for r in _HL_RUNS), Text()),
        ),
        _hl_edit_pair(
            "FID to the mask test images: one-class / unconditional draws",
            "cond.fid_mask",
            "cond.fid_mask_uncond",
            ".0f",
        ),
        _hl_edit_pair(
            "FID to the no-mask test images: one-class / unconditional draws",
            "cond.fid_nomask",
            "cond.fid_nomask_uncond",
            ".0f",
        ),
    ),
)

_VARIANT_ROWS = (  # name, levels, region, keep, strengths
    ("below the upper face, keeping half its code (default)", "all", "lower", 0.5, (1.0, 2.0)),
    ("below the upper face, plain mean shift", "all", "lower", 1.0, (1.0, 2.0)),
    ("whole face, plain mean shift", "all", "all", 1.0, (1.0,)),
    ("top latent only", "top", "all", 1.0, (1.0,)),
)
EDIT_VARIANTS = Table(
    (
        "U-Net VAE: edit, strength",
        "mask on: flipped",
        "mask off: flipped",
        "upper-face PSNR, on (dB)",
        "upper-face PSNR, off (dB)",
    ),
    tuple(
        (
            f"{name}, {strength:g}",
            tuple(
                Row(
                    HL,
                    "editing",
                    (
                        ("model", "vae_unet-linear"),
                        ("levels", levels),
                        ("region", region),
                        ("keep", keep),
                        ("strength", strength),
                    ),
                    key,
                    fmt,
                )
                for key, fmt in (
                    ("flip_on", ".0%"),
                    ("flip_off", ".0%"),
                    ("psnr_upper_on", ".1f"),
                    ("psnr_upper_off", ".1f"),
                )
            ),
        )
        for name, levels, region, keep, strengths in _VARIANT_ROWS
        for strength in strengths
    ),
)

TABLES |= {"headline": HEADLINE, "editing": EDITING, "edit_variants": EDIT_VARIANTS}

# -- docs/longer_training.md: the VAE and the coarse U-Net VAE at 10 and at 50 epochs ---------

#: (column, report, run): each model's two budgets are evaluated together in one report
_LONG = (
    ("VAE, 10 epochs", "long_vae/metrics.json", "vae-e10"),
    ("VAE, 50 epochs", "long_vae/metrics.json", "vae-e50"),
    ("U-Net VAE, coarse latents, 10 epochs", "long_coarse/metrics.json", "vae_unet_coarse-e10"),
    ("U-Net VAE, coarse latents, 50 epochs", "long_coarse/metrics.json", "vae_unet_coarse-e50"),
)


def _long_row(label: str, key: str, fmt: str, unet_only: bool = False) -> tuple:
    cells = tuple(
        Text() if unet_only and not run.startswith("vae_unet") else One(file, run, key, fmt)
        for _, file, run in _LONG
    )
    return (label, cells)


def _long_pair(label: str, a: str, b: str, fmt_a: str, fmt_b: str) -> tuple:
    cells = tuple(Pair(One(f, r, a, fmt_a), One(f, r, b, fmt_b)) for _, f, r in _LONG)
    return (label, cells)


LONGER = Table(
    ("", *(c for c, _, _ in _LONG)),
    (
        _long_row("best checkpoint's epoch (from 0)", "model.epoch", ".0f"),
        _long_pair(
            "validation -ELBO (nats/image): best / last epoch",
            "train.best_val_loss",
            "train.val_loss",
            ",.0f",
            ",.0f",
        ),
        _long_row("training -ELBO, last epoch (nats/image)", "train.train_loss", ",.0f"),
        _long_row("test -ELBO, best checkpoint (nats/image)", "recon.neg_elbo", ",.0f"),
        _long_row("-log p(x), IWAE k = 32 (bits/dim, 8-bit)", "recon.iwae_bpd8", ".2f"),
        _long_row("PSNR (dB)", "recon.psnr", ".2f"),
        _long_row("FID, N(0, I) prior", "samples.fid", ".0f"),
        _long_row("the run's own sampler", "samples.run_sampler", ""),
        _long_row("FID, the run's own sampler", "samples.fid_best", ".0f"),
        _long_row(
            "FID of mean reconstructions of val images (~ a perfect sampler)", "recon.fid", ".0f"
        ),
        (
            "FID, the notebook's best fitted sampler, 3 seeds",
            (BEST_SAMPLER["vae"], Text(), BEST_SAMPLER["coarse"], Text()),
        ),
        (
            "that sampler",
            (Text("`gmm`, 30 comp., T 0.6"), Text(), Text("`two_stage_all`, T 1"), Text()),
        ),
        (
            "FID of 800 real validation images to the test images (a floor)",
            tuple(One(f, "data (reference)", "samples.fid", ".0f") for _, f, _ in _LONG),
        ),
        _long_pair(
            "precision / recall, the run's own sampler",
            "samples.precision_best",
            "samples.recall_best",
            ".2f",
            ".3f",
        ),
        _long_row("mask from the latent: linear probe", "probe.logreg.accuracy", ".3f"),
        _long_row("mask from the latent: k-NN, k = 5", "latent.knn", ".3f"),
        _long_row("active units, top latent", "latent.active_units", ""),
        _long_row("share of the KL in the top latent", "skips.kl_top_share", ".1%", unet_only=True),
        _long_row(
            "swap test: output change carried by the skips",
            "skips.swap_skips",
            ".2f",
            unet_only=True,
        ),
    ),
)

TABLES |= {"longer": LONGER}

# the coarse 50-epoch run's sample FIDs under two eval seeds and two set sizes: how much of an FID
# difference the eval's own draw and the number of images make
_EVS = "long_coarse_evalseeds/{}/metrics.json"
_EV_1000 = (
    ("long_coarse/metrics.json", "vae_unet_coarse-e50"),
    (_EVS.format("n1000-s1"), "vae_unet_coarse-linear"),
)
_EV_800 = (
    (_EVS.format("n800-s0"), "vae_unet_coarse-linear"),
    (_EVS.format("n800-s1"), "vae_unet_coarse-linear"),
)
EVAL_NOISE = Table(
    ("", "eval seed 0", "eval seed 1"),
    tuple(
        (label, tuple(One(f, r, key, ".1f") for f, r in cells))
        for key, sampler in (
            ("samples.fid_best", "the run's own sampler"),
            ("samples.fid", "N(0, I)"),
        )
        for label, cells in (
            (f"FID, {sampler}, 1,000 samples", _EV_1000),
            (f"FID, {sampler}, 800 samples", _EV_800),
        )
    ),
)

TABLES |= {"longer_eval_noise": EVAL_NOISE}
