"""Data: dataset layout and patients, splits, image decoding and the decode-once cache."""
