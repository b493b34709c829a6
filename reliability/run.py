"""`make reliability`: bad inputs, a service soak, kills and resumes, damaged caches, the out-of-distribution
guard. Writes reports/reliability/results.json, prints a table, exits 1 when any check fails.

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
import ood_check
import soak
from bad_files import write_bad_files
from common import CHEST_XRAY, ROOT, cxr, env_with, real_subset

CHECKS = ("bad_inputs", "service_soak", "kill_resume", "cache_corruption", "ood")


def _table(results: dict) -> str:
    rows = [("check", "result", "figures")]
    rows += [(name, False, r["error"]) for name, r in results.items() if isinstance(r, dict) and "error" in r]
    b, s, k, c, o = (results.get(name) if "error" not in results.get(name, {}) else None for name in CHECKS)
    if b:
        rows.append(("bad_inputs", b["passed"], f"{b['kinds']} kinds x {len(b['surfaces'])} surfaces = {b['tried']} "
                     f"tried: {b['clear_errors']} clear errors, {b['accepted']} accepted, {b['wrong']} wrong, "
                     f"{b['crashes']} crashes"))
    if s:
        rows.append(("service_soak", s["passed"], f"{s['clients']} clients x {s['seconds']} s: {s['requests']} "
                     f"requests, {s['errors_5xx']} 5xx, p95 {s['p95_ms']} ms, RSS {s['rss_start_mb']} -> "
                     f"{s['rss_end_mb']} MB"))
    if k:
        rows.append(("kill_resume", k["passed"], f"{k['kills']} kills, {k['resumed']} resumed, max prob diff "
                     f"{k['max_prob_diff']:.4f} (rerun noise floor {k['rerun_noise_floor']:.4f})"))
    if c:
        rows.append(("cache_corruption", c["passed"], f"{c['detected']}/{c['corrupted']} damaged files detected and "
                     f"rebuilt; 2 processes on one cache: {c['concurrent_fill']['intact']}/"
                     f"{c['concurrent_fill']['entries']} entries intact"))
    if o:
        seed, robust = o["seed_models_128px"], o["robust_64px"]
        rows.append(("ood", o["passed"], f"X-rays flagged {seed['xray_flagged_rate']:.2%} / "
                     f"{robust['xray_flagged_rate']:.2%}, non-X-rays flagged {seed['non_xray_flagged_rate']:.1%} / "
                     f"{robust['non_xray_flagged_rate']:.1%} (seed / robust preprocessing)"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {('PASS' if ok is True else 'FAIL' if ok is False else ok):<6}  {text}"
                     for name, ok, text in rows)


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
