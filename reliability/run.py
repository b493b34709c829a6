"""`make reliability`: bad inputs, a service soak, kills and resumes, damaged caches, the out-of-distribution
guard, the site check's false alarms and detections, and every model kind through every surface from new
processes.
Writes reports/reliability/results.json, prints a table, exits 1 when any check fails.

    .venv/bin/python reliability/run.py [--only bad_inputs,soak,...] [--soak-seconds 60] [--clients 32]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import bad_inputs
import faults
import model_kinds
import ood_check
import site_checks
import soak
from bad_files import write_bad_files
from common import CHEST_XRAY, ROOT, cxr, env_with, real_subset

CHECKS = ("bad_inputs", "service_soak", "kill_resume", "cache_corruption", "ood", "site_check", "model_kinds")


SUMMARIES = {  # one line of figures per check, for the printed table
    "bad_inputs": lambda b: (f"{b['kinds']} kinds x {len(b['surfaces'])} surfaces = {b['tried']} tried: "
                             f"{b['clear_errors']} clear errors, {b['accepted']} accepted, {b['wrong']} wrong, "
                             f"{b['crashes']} crashes"),
    "service_soak": lambda s: (f"{s['clients']} clients x {s['seconds']} s: {s['requests']} requests, "
                               f"{s['errors_5xx']} 5xx, p95 {s['p95_ms']} ms, RSS {s['rss_start_mb']} -> "
                               f"{s['rss_end_mb']} MB"),
    "kill_resume": lambda k: (f"{k['kills']} kills, {k['resumed']} resumed, max prob diff {k['max_prob_diff']:.4f} "
                              f"(rerun noise floor {k['rerun_noise_floor']:.4f})"),
    "cache_corruption": lambda c: (f"{c['detected']}/{c['corrupted']} damaged files detected and rebuilt; "
                                   f"2 processes on one cache: {c['concurrent_fill']['intact']}/"
                                   f"{c['concurrent_fill']['entries']} entries intact"),
    "ood": lambda o: (f"X-rays flagged {o['seed_models_128px']['xray_flagged_rate']:.2%} / "
                      f"{o['robust_64px']['xray_flagged_rate']:.2%}, non-X-rays flagged "
                      f"{o['seed_models_128px']['non_xray_flagged_rate']:.1%} / "
                      f"{o['robust_64px']['non_xray_flagged_rate']:.1%} (seed / robust preprocessing)"),
    "site_check": lambda s: (f"halves of the training batch: {s['same']}/{s['draws']} same; shifted batches "
                             f"detected {s['detected']}/{len(s['shifts'])} ("
                             + ", ".join(f"{k} {v['verdict']}" for k, v in s["shifts"].items()) + ")"),
    "model_kinds": lambda m: (f"{sum(k['passed'] for k in m['kinds'].values())}/{len(m['kinds'])} kinds "
                              f"({', '.join(m['kinds_tried'])}) load, predict (Keras, ONNX, Ray), stress and serve"),
}


def _table(results: dict) -> str:
    rows = [("check", "result", "figures")]
    for name in CHECKS:
        if name in results:
            r = results[name]
            rows.append((name, "PASS" if r["passed"] else "FAIL", r["error"] if "error" in r else SUMMARIES[name](r)))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {ok:<6}  {text}" for name, ok, text in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated subset of " + ", ".join(CHECKS))
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "reliability")
    p.add_argument("--soak-seconds", type=float, default=60)
    p.add_argument("--clients", type=int, default=32)
    args = p.parse_args()
    only = args.only.split(",") if args.only else CHECKS
    if not (CHEST_XRAY / "train").is_dir():
        raise SystemExit(f"the shared data is needed at {CHEST_XRAY}")
    args.out.mkdir(parents=True, exist_ok=True)
    results, started = {}, time.time()
    with tempfile.TemporaryDirectory(prefix="cxr-reliability-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        env = env_with(CXR_CACHE=cache / "main")
        subset = real_subset(work / "subset", per_class=60)
        run = work / "run"  # a small real model, trained as a user would
        trained = cxr("train", "--model", "cnn", "--data", subset, "--out", run, "--size", 64, "--epochs", 3,
                      "--split", "pooled", "--seed", 3, env=env)
        if trained.returncode != 0:
            raise SystemExit(f"could not train the model the checks use:\n{trained.stderr[-3000:]}")
        steps = {
            "bad_inputs": lambda: bad_inputs.check(run, work / "bad", subset, env),
            "service_soak": lambda: soak.check(
                run, [f.path for f in write_bad_files(work / "soak_bad", CHEST_XRAY / "train" / "NORMAL" /
                                                      "IM-0115-0001.jpeg") if f.http],
                env, clients=args.clients, seconds=args.soak_seconds),
            "kill_resume": lambda: faults.kill_resume(subset, work / "kills", cache),
            "cache_corruption": lambda: faults.cache_corruption(run, subset, work / "corruption",
                                                                cache / "corruption"),
            "ood": ood_check.check,
            "site_check": lambda: site_checks.check(work / "site"),
            "model_kinds": lambda: model_kinds.check(subset, work / "kinds", env),
        }
        for name in only:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            t0 = time.time()
            try:
                results[name] = {**steps[name](), "check_seconds": round(time.time() - t0, 1)}
            except Exception as exc:  # a broken check is a failed check, reported with the rest
                results[name] = {"passed": False, "error": f"{type(exc).__name__}: {exc}"}
            print(f"  {name}: {'PASS' if results[name]['passed'] else 'FAIL'} ({time.time() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    results["total_seconds"] = round(time.time() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(_table(results))
    print(f"results: {args.out / 'results.json'} ({results['total_seconds']:.0f} s)")
    return 0 if all(results[name]["passed"] for name in only) else 1


if __name__ == "__main__":
    sys.exit(main())
