"""Time to accuracy: wall seconds from raw files to a model at validation ROC AUC >= 0.99, cxr against the peer.

Both train the seed CNN on the same patient-grouped split (cxr's split.csv: its train and val sides), in
mixed bfloat16, with early stopping on validation loss (patience 20), from a cold start (no decode cache),
validated on the same unchanged images (cxr without its framed copies, which the peer does not have).
Both clocks run from the launch of the process (Python, TensorFlow and Keras imports included: a user waits
for them either way) to the end of the first epoch whose validation AUC reaches the target.

    .venv/bin/python bench/time_to_accuracy.py            # both; the peer runs in .venv-peer
    .venv-peer/bin/python bench/time_to_accuracy.py --peer SPLIT_DIR   # the peer's side alone
"""

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peer import PEER, ensure_peer_venv

from cxr.testing import CHEST_XRAY

TARGET_AUC, PATIENCE, MAX_EPOCHS = 0.99, 20, 30


def cxr_side(data: Path, work: Path) -> dict:
    """`cxr train` as a user runs it; its history.csv is watched and the clock read when a line reaches the target."""
    run = work / "cxr-run"
    env = {**os.environ, "CXR_CACHE": str(work / "cold-cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "cxr.cli", "-q", "train", "--model", "cnn", "--data", str(data),
                                "--out", str(run), "--epochs", str(MAX_EPOCHS), "--patience", str(PATIENCE),
                                "--precision", "mixed_bfloat16", "--no-framed-validation"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reached, seen = None, 0
    while process.poll() is None and reached is None:
        time.sleep(0.05)
        history = run / "history.csv"
        if history.exists():
            rows = list(csv.DictReader(history.open()))
            for i, row in enumerate(rows[seen:], start=seen):
                if row.get("val_auc") and float(row["val_auc"]) >= TARGET_AUC:
                    reached = {"seconds": time.perf_counter() - start, "epochs": i + 1}
                    break
            seen = len(rows)
    process.kill()
    process.wait()
    return reached or {"seconds": None, "epochs": None}


def split_folders(run_split: Path, out: Path) -> Path:
    """The train and val sides of a cxr split as Kaggle-style folders of links, for the peer's loader."""
    with open(run_split, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] in ("train", "val"):
                cls = "PNEUMONIA" if row["label"] == "1" else "NORMAL"
                folder = out / row["split"] / cls
                folder.mkdir(parents=True, exist_ok=True)
                (folder / Path(row["file"]).name).symlink_to(row["file"])
    return out


def peer_side(split_dir: Path) -> dict:
    """The peer's own pipeline and model (imported from its file), validated every epoch on the same val side."""
    spec = importlib.util.spec_from_file_location("peer_keras", PEER)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    keras, tf = peer.keras, peer.tf
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    start = float(os.environ["TTA_LAUNCHED"])  # the clock runs from the launch of the process, as for cxr

    def load(side, shuffle):
        ds = keras.utils.image_dataset_from_directory(
            split_dir / side, labels="inferred", label_mode="binary", color_mode="grayscale", image_size=(128, 128),
            batch_size=32, shuffle=shuffle, seed=0, verbose=False)
        return ds.cache().prefetch(tf.data.AUTOTUNE)

    train, val = load("train", True), load("val", False)
    model = peer.baseline_cnn(128, False)
    model.compile("adam", "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    reached = {}

    class Target(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs["val_auc"] >= TARGET_AUC and not reached:
                reached.update(seconds=time.time() - start, epochs=epoch + 1)
                self.model.stop_training = True

    model.fit(train, validation_data=val, epochs=MAX_EPOCHS, verbose=0,
              callbacks=[Target(), keras.callbacks.EarlyStopping(patience=PATIENCE, restore_best_weights=True)])
    return reached or {"seconds": None, "epochs": None}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=CHEST_XRAY)
    p.add_argument("--peer", type=Path, metavar="SPLIT_DIR", help="run the peer's side on this split folder")
    args = p.parse_args()
    if args.peer:
        print(json.dumps(peer_side(args.peer)))
    else:
        print(json.dumps(measure(args.data), indent=2))


def measure(data: Path) -> dict:
    """Both sides, one after the other, on one machine; ratio = peer seconds / cxr seconds (> 1: cxr faster)."""
    with tempfile.TemporaryDirectory(prefix="cxr-tta-") as tmp:
        work = Path(tmp)
        ours = cxr_side(data.resolve(), work)
        folders = split_folders(work / "cxr-run" / "split.csv", work / "split")
        python = ensure_peer_venv()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TTA_LAUNCHED": str(time.time())}
        done = subprocess.run([str(python), __file__, "--peer", str(folders)], capture_output=True, text=True,
                              check=True, env=env)
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = theirs["seconds"] / ours["seconds"] if ours["seconds"] and theirs["seconds"] else None
    return {"target_val_auc": TARGET_AUC, "max_epochs": MAX_EPOCHS, "cxr": ours, "peer_bf16": theirs, "ratio": ratio}


if __name__ == "__main__":
    main()
