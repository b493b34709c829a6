"""The one Mahalanobis distance of the guards: standardise, optionally reduce by PCA, then the distance from the
training rows under scikit-learn's Ledoit-Wolf covariance (shrunk: a few thousand rows, up to a few hundred
columns), divided by the number of columns so that distances of blocks of different widths compare."""

import numpy as np


def fit_distance(x: np.ndarray, components: int | None = None) -> dict:
    """The parameters of the distance from the rows of `x` (float arrays; `pca_*` only with `components`)."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    x = np.asarray(x, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    params = {"mean": mean, "std": std}
    if components is not None:
        pca = PCA(min(components, x.shape[1], len(x) - 1), random_state=0).fit(z)
        z = pca.transform(z)
        params.update(pca_mean=pca.mean_, pca_components=pca.components_)
    covariance = LedoitWolf().fit(z)
    return {**params, "location": covariance.location_, "precision": covariance.precision_}


def distance(params: dict, x: np.ndarray) -> np.ndarray:
    """Per row of `x`: sqrt(squared Mahalanobis distance / columns), under `params` from fit_distance."""
    z = (np.asarray(x, np.float64) - params["mean"]) / params["std"]
    if "pca_components" in params:
        z = (z - params["pca_mean"]) @ params["pca_components"].T
    z = z - params["location"]
    squared = np.einsum("ij,jk,ik->i", z, params["precision"], z)
    return np.sqrt(np.maximum(squared, 0) / z.shape[1])
