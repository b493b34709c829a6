"""HTTP service around a trained run: a web page and a JSON API."""
