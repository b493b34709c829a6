"""`cxr ensemble`: a run folder like any other, equal to its member when averaged with itself; the mean of
its members' logits; a member at a whole fraction of the size sees the image averaged down."""

import csv
import io
import json
import shutil

import pytest

from conftest import FULLRES, run_cxr, writable_copy
from cxr.runs.info import RunInfo

pytestmark = pytest.mark.integration


def probabilities(run, *extra):
    result = run_cxr("predict", run, FULLRES / "NORMAL", *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    return {row["path"]: float(row["probability"]) for row in csv.DictReader(io.StringIO(result.stdout))}


def test_a_run_averaged_with_itself_predicts_like_the_run(trained_run, tmp_path):
    out = tmp_path / "same"
    result = run_cxr("ensemble", trained_run, trained_run, "--out", out, "--no-tta")
    assert result.returncode == 0, result.stderr[-2000:]
    info, single = RunInfo.read(out), RunInfo.read(trained_run)
    assert info.preprocessing == single.preprocessing
    assert [m.run.resolve() for m in info.members] == [trained_run.resolve()] * 2
    # Its member computes in the precision the member's architecture runs fastest in here, as the member does
    # alone (bfloat16 on some CPUs), and its temperature was fitted on the same logits.
    mine, theirs = probabilities(out), probabilities(trained_run)
    assert mine.keys() == theirs.keys()
    assert max(abs(mine[p] - theirs[p]) for p in mine) < 1e-4
    assert info.threshold == pytest.approx(single.threshold, abs=1e-4)
    assert (out / "metrics.json").exists() and "test: n=" in result.stdout


def test_ensemble_with_test_time_augmentation_predicts_and_explains_after_its_runs_move(trained_run, tmp_path):
    writable_copy(trained_run, tmp_path / "made" / "runs" / "member")
    made = run_cxr("ensemble", "runs/member", "runs/member", "--out", "runs/tta", cwd=tmp_path / "made")
    assert made.returncode == 0, made.stderr[-2000:]
    shutil.move(tmp_path / "made" / "runs", tmp_path / "runs")  # the runs folder moves; the ensemble finds its
    elsewhere = tmp_path / "elsewhere"  # members beside it, from any working directory
    elsewhere.mkdir()
    result = run_cxr("predict", tmp_path / "runs" / "tta", FULLRES / "NORMAL" / "IM-0217-0001.jpeg", "--explain",
                     tmp_path / "cam", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "cam").glob("*.png"))) == 1


@pytest.mark.parametrize("field, value", [("intensity", "none"), ("size", 48)])
def test_members_with_different_preprocessing_are_refused(trained_run, tmp_path, field, value):
    """Another intensity step, or a size that is no whole fraction of the largest (48 beside 64)."""
    other = tmp_path / "other"
    writable_copy(trained_run, other)
    info = json.loads((other / "model.json").read_text())
    info["preprocessing"][field] = value
    (other / "model.json").write_text(json.dumps(info))
    result = run_cxr("ensemble", trained_run, other, "--out", tmp_path / "mixed")
    assert result.returncode != 0 and "share their preprocessing" in result.stderr
    assert not (tmp_path / "mixed").exists()


def test_members_log_odds_are_averaged_and_a_half_size_member_sees_2x2_block_means():
    import keras
    import numpy as np

    from cxr.models.ensemble import build_ensemble
    from cxr.models.for_inference import OUTPUT_LAYER

    def member(size, seed):  # a probability that depends on every pixel, differently for each
        keras.utils.set_random_seed(seed)
        image = keras.Input((size, size, 1))
        out = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(keras.layers.Flatten()(image))
        return keras.Model(image, out)

    def logit(p):
        return np.log(p / (1 - p))

    big, small = member(8, 1), member(4, 2)
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 1)).astype(np.float32)
    blocks = x.reshape(3, 4, 2, 4, 2, 1).mean(axis=(2, 4))
    mean_logit = (logit(big.predict(x, verbose=0)) + logit(small.predict(blocks, verbose=0))) / 2
    ensemble = build_ensemble([big, small], [8, 4], 8, tta=False)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), 1 / (1 + np.exp(-mean_logit)), atol=1e-5)


def test_the_same_pixels_through_the_same_model_are_computed_once(trained_run, tmp_path, monkeypatch):
    """`cxr stress` scores an ensemble after its members on the same changed images, and the steps of a chain read
    the same splits again: a model's outputs for pixels it scored lately are reused, whatever array holds them.
    Pixels changed in place, a timing (`recompute`) and a service (`remember=False`) are computed afresh."""
    import numpy as np

    from cxr.inference import predictor as predictor_module
    from cxr.inference.predictor import Predictor
    from cxr.inference.remembered import Remembered
    from cxr.training.ensemble import make_ensemble

    make_ensemble([trained_run, trained_run], tmp_path / "pair", tta=False)
    member, ensemble = Predictor(trained_run), Predictor(tmp_path / "pair")
    images = member.load(sorted((FULLRES / "NORMAL").iterdir())).images
    computed, outputs = [], Remembered(keep=64)  # nothing from earlier tests in this process
    monkeypatch.setattr(predictor_module, "_OUTPUTS", lambda run, x, compute, recompute=False: outputs(
        run, x, lambda: computed.append(len(x)) or compute(), recompute))
    alone = member.raw(images)
    assert computed == [len(images)]
    np.testing.assert_allclose(ensemble.raw(images), alone, rtol=1e-6)  # the mean of one logit twice
    np.testing.assert_allclose(ensemble.raw(images.copy()[..., None]), alone, rtol=1e-6)  # other arrays, same pixels
    assert computed == [len(images)]  # both members read the member's outputs
    changed = images.copy()
    changed[:, :8] = 0
    member.raw(changed)
    member.raw(images, recompute=True)
    Predictor(trained_run, remember=False).raw(images)
    assert computed == [len(images)] * 4
    # Copied away from its members, the ensemble folder still predicts: through its own saved model, in float32.
    shutil.copytree(tmp_path / "pair", tmp_path / "copied" / "alone" / "pair")
    by_itself = Predictor(tmp_path / "copied" / "alone" / "pair")
    assert by_itself.precision == "float32"
    np.testing.assert_allclose(by_itself.predict(images), ensemble.predict(images), atol=1e-2)
