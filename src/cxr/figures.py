"""Figures, readable at a glance: sample X-rays, training curves, confusion matrix, ROC curves."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import auc, roc_curve

from cxr import CLASSES


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _chosen_per_class(labels: np.ndarray, per_class: int, seed: int) -> list[np.ndarray]:
    """Up to `per_class` indices of each class, drawn without replacement (one draw after the other)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for row in range(len(CLASSES)):
        idx = np.flatnonzero(labels == row)
        chosen.append(rng.choice(idx, size=min(per_class, idx.size), replace=False) if idx.size else idx)
    return chosen


def sample_images(images: np.ndarray, labels: np.ndarray, path: Path, per_class: int = 4, seed: int = 0) -> Path:
    fig, axes = plt.subplots(2, per_class, figsize=(2.2 * per_class, 4.8))
    for row, (cls, chosen) in enumerate(zip(CLASSES, _chosen_per_class(labels, per_class, seed))):
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(images[chosen[col]].squeeze(), cmap="gray", vmin=0, vmax=255)
                ax.set_title(cls, fontsize=10, color="tab:red" if row else "tab:blue")
    fig.suptitle("Sample X-rays", fontsize=12)
    return save(fig, path)


def draw_curves(axes, history: dict, title: str = "") -> None:
    """Loss and accuracy, train vs validation, on a pair of axes; the best epoch marked."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        if metric not in history:
            continue
        ax.plot(epochs, history[metric], label="train")
        ax.plot(epochs, history[f"val_{metric}"], label="validation")
        ax.set_title(f"{title} {metric}".strip(), fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    best = int(np.argmin(history["val_loss"])) + 1
    axes[0].axvline(best, color="gray", ls="--", lw=1)
    axes[0].annotate(f"best epoch {best}", (best, axes[0].get_ylim()[1]), fontsize=8, va="top", ha="left")


def training_curves(history: dict, path: Path, title: str = "") -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    draw_curves(axes, history, title)
    return save(fig, path)


def draw_confusion(ax, cm, title: str) -> None:
    cm = np.asarray(cm)
    ax.imshow(cm, cmap="Blues")
    for (i, j), value in np.ndenumerate(cm):
        share = value / max(cm[i].sum(), 1)
        ax.text(j, i, f"{value}\n({share:.0%})", ha="center", va="center",
                color="white" if value > cm.max() / 2 else "black", fontsize=11)
    ax.set_xticks([0, 1], [f"pred {c}" for c in CLASSES], fontsize=8)
    ax.set_yticks([0, 1], [f"true {c}" for c in CLASSES], fontsize=8)
    ax.set_title(title, fontsize=10)


def confusion_matrix(cm, path: Path, title: str = "Confusion matrix") -> Path:
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    draw_confusion(ax, cm, title)
    return save(fig, path)


def roc_curves(curves: dict, path: Path, title: str = "ROC curve") -> Path:
    """curves: name -> (labels, probs, threshold). Full curve, and the top-left corner where models differ."""
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.4))
    for name, (labels, probs, threshold) in curves.items():
        labels, probs = np.asarray(labels), np.asarray(probs)
        fpr, tpr, _ = roc_curve(labels, probs)
        predicted = probs >= threshold
        for ax in axes:
            line, = ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
            ax.plot(predicted[labels == 0].mean(), predicted[labels == 1].mean(), "o", color=line.get_color())
    axes[0].plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
    axes[1].set_xlim(-0.005, 0.2)
    axes[1].set_ylim(0.8, 1.005)
    for ax, part in zip(axes, ("", " (zoomed)")):
        ax.set_xlabel("1 - specificity (false positive rate)")
        ax.set_ylabel("sensitivity (true positive rate)")
        ax.set_title(f"{title}{part}; dot: chosen threshold", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


def stress_chart(result, path: Path) -> Path:
    """ROC AUC under each acquisition-like change (cxr.runs.results.Stress), against the unchanged test split."""
    names = list(result.perturbations)
    values = [result.perturbations[n].roc_auc for n in names]
    palette = {"photometric": "tab:blue", "geometric": "tab:orange", "acquisition": "tab:green"}
    colours = [palette[result.perturbations[n].kind] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.4))
    ax.barh(names, values, color=colours)
    base = result.baseline.roc_auc
    ax.axvline(base, color="black", lw=1)
    ax.axvline(base - 0.02, color="black", lw=1, ls=":")
    ax.set_xlim(max(0.5, min(values) - 0.02), 1.0)
    ax.invert_yaxis()
    ax.set_xlabel("ROC AUC on the test split (blue: photometric, orange: geometric, green: acquisition)")
    ax.set_title(f"solid line: unchanged ({base:.3f}); dotted: 0.02 below it", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def probe_chart(probes: dict, warn_above: float, path: Path, title: str) -> Path:
    """Univariate ROC AUC of each feature, and the probe's AUC, on each input."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    names = list(next(iter(probes.values()))["feature_auc"]) + ["probe (all)"]
    width = 0.8 / len(probes)
    for i, (label, p) in enumerate(probes.items()):
        values = [max(a, 1 - a) for a in p["feature_auc"].values()] + [p["auc"]]
        ax.bar(np.arange(len(names)) + i * width, values, width, label=label)
    ax.axhline(warn_above, color="red", ls=":", lw=1, label=f"warning above {warn_above}")
    ax.set_xticks(np.arange(len(names)) + width * (len(probes) - 1) / 2, names, rotation=20, fontsize=8)
    ax.set_ylim(0.45, 1.0)
    ax.set_ylabel("ROC AUC (0.5: no cue)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def lung_boxes(images: np.ndarray, labels: np.ndarray, find, path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """X-rays of both classes with their lung fields (tinted) and box; `find(image)` gives (mask, box), the box
    as shares (top, left, height, width, found)."""
    fig, axes = plt.subplots(2, per_class, figsize=(1.9 * per_class, 4.4))
    for row, (cls, chosen) in enumerate(zip(CLASSES, _chosen_per_class(labels, per_class, seed))):
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(chosen):
                continue
            image = images[chosen[col]].squeeze()
            mask, box = find(image)
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, extent=(0, 1, 1, 0))
            ax.imshow(np.ma.masked_where(~mask, mask), cmap="autumn", alpha=0.35, extent=(0, 1, 1, 0))
            ax.add_patch(plt.Rectangle((box.left, box.top), box.width, box.height, fill=False,
                                       color="lime" if box.found else "red", lw=1.2))
            ax.set_title(cls if box.found else f"{cls}: no lungs found", fontsize=8,
                         color="tab:red" if row else "tab:blue")
    fig.suptitle("Lung fields and their box: the framing probe's input (red: none found, the whole image)",
                 fontsize=11)
    return save(fig, path)


def reliability(labels, probs, path: Path, title: str, bins: int = 10) -> Path:
    """Reliability diagram: observed share of PNEUMONIA against the predicted probability, per bin."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(labels, probs, n_bins=bins, strategy="uniform")
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.set_xlabel("predicted P(pneumonia)")
    ax.set_ylabel("observed share of pneumonia")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save(fig, path)


def evidence_maps(maps: dict, background: np.ndarray, path: Path, method: str) -> Path:
    """The mean evidence map of each group (name -> (mean map or None, images)) over the mean X-ray, with the
    outer 10% band that the evidence audit counts as border."""
    fig, axes = plt.subplots(1, len(maps), figsize=(2.6 * len(maps), 3.1), squeeze=False)
    size = background.shape[0]
    for ax, (name, (mean, count)) in zip(axes[0], maps.items()):
        ax.imshow(background, cmap="gray")
        if mean is not None:
            ax.imshow(mean, cmap="jet", alpha=0.45, vmin=0, vmax=max(float(mean.max()), 1e-6))
        band = 0.1 * size
        ax.add_patch(plt.Rectangle((band - 0.5, band - 0.5), size - 2 * band, size - 2 * band, fill=False,
                                   ec="white", ls="--", lw=0.8))
        ax.set_title(f"{name}\n({count} X-rays)", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.suptitle(f"Mean evidence for the class called: {method}", fontsize=9, y=1.06)
    return save(fig, path)


def site_check(reference: np.ndarray, candidate: np.ndarray, ref_probs, cand_probs, threshold: float, path: Path,
               verdict: str) -> Path:
    """The two batches in the first two principal components of the model's features, and their probabilities."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.concatenate([reference, candidate]))
    xy = PCA(2, random_state=0).fit_transform(x)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    n = len(reference)
    axes[0].scatter(*xy[:n].T, s=6, alpha=0.5, label=f"validation ({n})")
    axes[0].scatter(*xy[n:].T, s=6, alpha=0.5, label=f"folder ({len(candidate)})")
    axes[0].set_title("Model features, first two principal components", fontsize=10)
    axes[0].legend(fontsize=8)
    bins = np.linspace(0, 1, 26)
    axes[1].hist(ref_probs, bins, density=True, alpha=0.5, label="validation")
    axes[1].hist(cand_probs, bins, density=True, alpha=0.5, label="folder")
    axes[1].axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    axes[1].set_xlabel("P(pneumonia), calibrated")
    axes[1].set_title("Probabilities", fontsize=10)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Site check: {verdict}", fontsize=11)
    fig.tight_layout()
    return save(fig, path)
