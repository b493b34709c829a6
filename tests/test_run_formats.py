"""Run folders in every format cxr has written: each is read by every path (predict, evaluate, serve, ONNX
export and prediction, model card), and the service answers the same fields under both engines.

The fixtures are model.json and training.json as older versions of cxr wrote them, around a small real model
(the weights are made here, not committed)."""

import io
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FULLRES
from cxr import CLASSES
from cxr.runs.info import FORMAT_VERSION, UNKNOWN_RULE, RunInfo
from cxr.runs.results import Metrics
from cxr.testing import CHEST_XRAY

SIZE = 32
XRAY = FULLRES / "NORMAL" / "IM-0217-0001.jpeg"
FIRST = {  # 2026-11-25: no preprocessing, temperature or guard stored
    "model": "cnn_seed", "size": SIZE, "classes": list(CLASSES), "input": "grayscale 0..255, squashed to size x size",
    "threshold": 0.42, "threshold_rule": "highest specificity with sensitivity >= 0.975 on the validation split",
    "weights_note": "", "parameters": 1, "trainable_parameters": 1, "cxr_version": "0.1.0"}
FORMATS = {
    "first": FIRST,
    "no rule, no classes": {"model": "cnn_seed", "size": SIZE, "threshold": 0.42},
    "preprocessing and temperature": {**FIRST, "preprocessing": {"size": SIZE, "resize": "squash", "intensity": "none",
                                                                 "border": "none", "version": 1},
                                      "temperature": 1.7, "flops_per_image": 123},
    "ensemble named by where it was made": {**FIRST, "model": "ensemble", "members": ["MEMBER"], "tta": False},
    "ensemble beside its members": {**FIRST, "model": "ensemble", "members": ["elsewhere/member"],
                                    "member_dirs": ["../member"], "member_sizes": [SIZE], "tta": False},
    "ensemble of mean logits": {**FIRST, "model": "ensemble", "members": ["elsewhere/member"],
                                "member_dirs": ["../member"], "member_sizes": [SIZE], "tta": False,
                                "combine": "mean_logit", "temperature": 1.2},
}
OLD_TRAINING = {"split_note": "pooled 70/15/15 by patient", "images": {"train": 1, "val": 1, "test": 4},
                "skipped": [], "epochs_run": 1, "epoch_seconds_mean": 1.0, "train_seconds": 1.0}


def _member_model():
    import keras

    from cxr.models import build

    keras.utils.set_random_seed(0)
    return build("cnn_seed", SIZE).model


def _ensemble_model(member, mean_logit: bool):
    """An ensemble model as cxr saved it then: the mean probability, or the mean logit, of one member twice."""
    import keras

    from cxr.models.ensemble import build_ensemble

    if mean_logit:
        return build_ensemble([member, member], [SIZE, SIZE], SIZE, tta=False)
    image = keras.Input((SIZE, SIZE, 1), name="image")
    return keras.Model(image, keras.layers.Average(name="pneumonia")([member(image), member(image)]))


def _split_csv(path: Path) -> None:
    files = [sorted((CHEST_XRAY / "train" / cls).iterdir())[:2] for cls in CLASSES]
    rows = [f"{f},{label},p{label}{i},test" for label, group in enumerate(files) for i, f in enumerate(group)]
    path.write_text("file,label,patient,split\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def old_runs(tmp_path_factory):
    if not (CHEST_XRAY / "train").is_dir():
        pytest.skip(f"real data not found at {CHEST_XRAY}")
    root = tmp_path_factory.mktemp("formats")
    member = _member_model()
    (root / "member").mkdir()
    member.save(root / "member" / "model.keras")
    (root / "member" / "model.json").write_text(json.dumps(FIRST))
    runs = {}
    for i, (name, raw) in enumerate(FORMATS.items()):
        run = root / f"run{i}"
        run.mkdir()
        raw = json.loads(json.dumps(raw).replace("MEMBER", str(root / "member")))
        model = member if raw["model"] != "ensemble" else _ensemble_model(member, raw.get("combine") == "mean_logit")
        model.save(run / "model.keras")
        (run / "model.json").write_text(json.dumps(raw))
        (run / "training.json").write_text(json.dumps(OLD_TRAINING))
        _split_csv(run / "split.csv")
        runs[name] = run
    return runs


@pytest.mark.integration
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_path_reads_a_run_of_an_older_format(old_runs, name):
    from fastapi.testclient import TestClient

    from cxr.evaluation.evaluate import evaluate_run
    from cxr.inference.export import export_onnx
    from cxr.inference.predictor import Predictor
    from cxr.reports.model_card import write_model_card
    from cxr.serve.app import create_app

    run, raw = old_runs[name], FORMATS[name]
    info = RunInfo.read(run)
    assert info.format_version == 1 and info.size == SIZE and info.threshold == raw["threshold"]
    assert info.threshold_rule == raw.get("threshold_rule", UNKNOWN_RULE)
    assert info.temperature == raw.get("temperature", 1.0)
    if raw["model"] == "ensemble":
        assert [m.run.name for m in info.members] == ["member"] and info.members[0].run.is_dir()
        assert info.outputs_logits == (raw.get("combine") == "mean_logit")

    keras_probs = Predictor(run, precision="float32").predict(Predictor(run).load([XRAY]).images)
    assert keras_probs.shape == (1,) and 0 <= keras_probs[0] <= 1
    report = evaluate_run(run)
    assert report.n == 4 and report.threshold == raw["threshold"]
    assert json.dumps(Metrics.read(run).to_dict()) == json.dumps(report.to_dict())  # NaN-safe: one class may lack
    card = write_model_card(run).read_text()
    assert f"decision threshold {raw['threshold']:.3f}" in card

    export_onnx(run, force=True)
    onnx = Predictor(run, engine="onnx")
    assert onnx.info == info.replace(format_version=FORMAT_VERSION, cxr_version=onnx.info.cxr_version)
    np.testing.assert_allclose(onnx.predict(onnx.load([XRAY]).images), keras_probs, atol=1e-4)

    answers = {}
    for engine in ("keras", "onnx"):
        with TestClient(create_app(run, engine=engine, precision="float32")) as client:
            answers[engine] = client.get("/api/model").json()
            predicted = client.post("/api/predict", files={"file": ("x.jpeg", io.BytesIO(XRAY.read_bytes()))})
            assert predicted.status_code == 200
    keras_answer, onnx_answer = ({k: v for k, v in a.items() if k not in ("engine", "precision")}
                                 for a in (answers["keras"], answers["onnx"]))
    assert keras_answer == onnx_answer and keras_answer["threshold_rule"] == info.threshold_rule


def test_a_run_file_missing_a_field_is_an_error_naming_the_file_and_the_field(tmp_path):
    from cxr.errors import RunError

    (tmp_path / "model.json").write_text(json.dumps({"size": 64}))
    with pytest.raises(RunError, match=r"model\.json: field 'model' is missing"):
        RunInfo.read(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"model": "cnn", "size": "big"}))
    with pytest.raises(RunError, match=r"model\.json: malformed run metadata"):
        RunInfo.read(tmp_path)


def test_model_json_round_trips_and_moves_with_its_folder(tmp_path):
    from cxr.data.preprocess import Preprocessing
    from cxr.runs.info import GuardInfo, Member

    (tmp_path / "runs" / "a").mkdir(parents=True)
    info = RunInfo(model="ensemble", preprocessing=Preprocessing(64, intensity="exact"), threshold=0.3,
                   threshold_rule="rule", temperature=1.5, trained_against=("framing", "text"),
                   guard=GuardInfo("ood.npz", 2.5, "rule"), members=(Member(tmp_path / "runs" / "a", 32),))
    info.write(tmp_path / "runs" / "ens")
    stored = json.loads((tmp_path / "runs" / "ens" / "model.json").read_text())
    assert stored["format_version"] == FORMAT_VERSION and stored["members"] == [{"run": "../a", "size": 32}]
    (tmp_path / "runs").rename(tmp_path / "moved")
    again = RunInfo.read(tmp_path / "moved" / "ens")
    assert again.members[0].run.resolve() == (tmp_path / "moved" / "a").resolve()
    assert again.replace(members=info.members) == info


def test_a_process_loads_a_saved_model_once_and_again_when_the_file_is_written_again(trained_run, tmp_path):
    import os

    from conftest import writable_copy
    from cxr.runs.folder import MODEL_FILE, load_run

    first, info = load_run(trained_run)
    assert load_run(trained_run)[0] is first and info == RunInfo.read(trained_run)
    run = writable_copy(trained_run, tmp_path / "run")
    copied = load_run(run)[0]
    assert copied is not first  # another file
    stat = (run / MODEL_FILE).stat()
    os.utime(run / MODEL_FILE, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as a new training writes it
    again = load_run(run)[0]
    assert again is not copied
    np.testing.assert_array_equal(again.get_weights()[0], copied.get_weights()[0])


def test_a_model_saved_in_this_process_is_read_back_as_the_model_it_saved(trained_run, tmp_path):
    """Training evaluates the run it just saved: load_run gives the saved model itself, and after the run is saved
    again (a new training into the folder), the new one."""
    from conftest import writable_copy
    from cxr.runs.folder import load_run, save_model

    run = writable_copy(trained_run, tmp_path / "run")
    model = load_run(run)[0]
    trained = type(model).from_config(model.get_config())
    trained.set_weights([w + 1 for w in model.get_weights()])
    save_model(trained, run)
    assert load_run(run)[0] is trained
    retrained = type(model).from_config(model.get_config())
    save_model(retrained, run)
    assert load_run(run)[0] is retrained
