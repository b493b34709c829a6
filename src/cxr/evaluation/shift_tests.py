"""The site check's two-sample tests: is a folder drawn from the same distribution as the validation split?

- a domain classifier (Rabanser et al. 2019, "Failing Loudly"): logistic regression told to tell the batches
  apart, cross-validated in folds grouped by patient, its ROC AUC against the same classifier on shuffled batch
  labels;
- the kernel two-sample test (MMD, RBF kernel at the median distance) with SciPy's permutation test;
- Kolmogorov-Smirnov tests on the acquisition statistics of the model's inputs.

Features are standardised and reduced by PCA once, on both batches together and without their batch labels
(so the null is untouched by it): the classifiers then fit in milliseconds.
"""

import numpy as np

COMPONENTS, PERMUTATIONS, MMD_SAMPLE, NULL_SHUFFLES = 32, 200, 400, 20
STATISTICS = ("mean", "std", "p5", "border_mean", "sharpness", "corner_marks", "lung_height", "lung_width")


def reduced(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both batches' features standardised and projected on the PCA components of the two together."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([a, b])
    pca = make_pipeline(StandardScaler(), PCA(min(COMPONENTS, x.shape[1], len(x) // 2), random_state=0))
    z = pca.fit_transform(x)
    return z[: len(a)], z[len(a):]


def domain_classifier(a: np.ndarray, b: np.ndarray, groups_a: list, groups_b: list, seed: int = 0) -> dict:
    """Out-of-fold ROC AUC of telling `b` from `a`, and its p-value against NULL_SHUFFLES shuffles of the batch
    labels (a normal fit: out-of-fold scores are not independent, so a rank test on them alone rejects too
    often)."""
    from scipy.stats import norm
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    x = np.concatenate(reduced(a, b))
    y = np.r_[np.zeros(len(a)), np.ones(len(b))].astype(int)
    groups = np.array([f"a{g}" for g in groups_a] + [f"b{g}" for g in groups_b])
    splitter = StratifiedGroupKFold(min(5, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    folds = list(splitter.split(x, y, groups))  # once: the shuffles keep the partition by patient
    model = LogisticRegression(max_iter=2000, C=0.1)

    def auc(labels):
        return roc_auc_score(labels, cross_val_predict(model, x, labels, method="predict_proba", cv=folds)[:, 1])

    observed = auc(y)
    rng = np.random.default_rng(seed)
    null = [auc(rng.permutation(y)) for _ in range(NULL_SHUFFLES)]
    p = norm.sf((observed - np.mean(null)) / max(np.std(null, ddof=1), 1e-3))
    return {"domain_classifier_auc": float(observed), "domain_classifier_p_value": float(p)}


def mmd(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """Unbiased MMD^2 with an RBF kernel at the median squared distance, and its permutation p-value."""
    from scipy.stats import permutation_test
    from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel

    rng = np.random.default_rng(seed)
    a, b = (f[rng.permutation(len(f))[:MMD_SAMPLE]] for f in reduced(a, b))
    x = np.concatenate([a, b])
    squared = euclidean_distances(x, squared=True)
    kernel = rbf_kernel(x, gamma=1.0 / np.median(squared[squared > 0]))

    def statistic(rows_a, rows_b):  # the batches as row numbers: the kernel is computed once
        kxx, kyy, kxy = kernel[np.ix_(rows_a, rows_a)], kernel[np.ix_(rows_b, rows_b)], kernel[np.ix_(rows_a, rows_b)]
        n, m = len(rows_a), len(rows_b)
        return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                - 2 * kxy.mean())

    test = permutation_test((np.arange(len(a)), np.arange(len(a), len(x))), statistic, vectorized=False,
                            permutation_type="independent", n_resamples=PERMUTATIONS, alternative="greater",
                            random_state=seed)
    return {"mmd2": float(test.statistic), "mmd_p_value": float(test.pvalue)}


def acquisition_statistics(images: np.ndarray) -> dict:
    """Per image: grey levels (mean, standard deviation, 5th percentile, border mean), sharpness (variance of the
    Laplacian), bright marks in the corners (where consoles burn in text) and the lung box's height and width."""
    import cv2

    from cxr.data.thorax import framing_features
    from cxr.evaluation.probe import GLOBAL_STATISTICS, global_statistics

    images = np.asarray(images).reshape(len(images), images.shape[1], images.shape[2])
    grey = dict(zip(GLOBAL_STATISTICS, global_statistics(images).T))
    corner = max(2, images.shape[1] // 8)
    corners = np.concatenate([images[:, :corner, :corner], images[:, :corner, -corner:], images[:, -corner:, :corner],
                              images[:, -corner:, -corner:]], axis=1).reshape(len(images), -1)
    framing, _ = framing_features(images)
    return {**{name: grey[name] for name in ("mean", "std", "p5", "border_mean")},
            "sharpness": np.array([float(cv2.Laplacian(im, cv2.CV_32F).var()) for im in images]),
            "corner_marks": (corners >= 240).mean(axis=1), "lung_height": framing[:, 2], "lung_width": framing[:, 3]}


def statistics_tests(reference: dict, candidate: dict) -> dict:
    """A KS test per acquisition statistic, with each batch's median."""
    from scipy.stats import ks_2samp

    tests = {}
    for name in STATISTICS:
        test = ks_2samp(reference[name], candidate[name], method="asymp")
        tests[name] = {"validation_median": float(np.median(reference[name])),
                       "folder_median": float(np.median(candidate[name])),
                       "ks": float(test.statistic), "p_value": float(test.pvalue)}
    return tests
