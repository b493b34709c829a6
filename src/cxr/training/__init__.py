"""Fitting a model: `fit` (the training loop and what it writes), callbacks for exact resume, devices,
cached transfer features, ensembles and sweeps."""
