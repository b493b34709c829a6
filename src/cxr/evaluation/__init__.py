"""How good a run is, on data it never trained on: metrics, `cxr evaluate`, the stress test, the data audit
and its probes, and the rule that chooses the served run (`selection`)."""
