"""The benchmark's summary: ratios against the peer and the table `make bench` prints (bench/results.json)."""


def row(name, cxr_value, peer_value=None, lower_is_better=False):
    """One table row; the ratio always reads 'how many times better cxr is' (speed ratio)."""
    ratio = ""
    if peer_value:
        ratio = f"{(peer_value / cxr_value if lower_is_better else cxr_value / peer_value):.2f}x"
    peer = f"{peer_value:,.1f}" if peer_value else ""
    return f"| {name} | {cxr_value:,.1f} | {peer} | {ratio} |"


def ratios(r: dict) -> dict:
    """cxr speed / peer speed (> 1: cxr is faster), each against the peer's best configuration where known."""
    def median(*keys):
        value = r
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def ratio(ours, theirs):
        return round(ours / theirs, 3) if ours and theirs else None

    return {
        "train_vs_peer_bf16": ratio(median("train_mixed_bfloat16", "train_images_per_s", "median"),
                                    median("peer_bf16", "train_images_per_s", "median")),
        "infer_vs_peer_bf16": ratio(median("inference", "keras bfloat16", "infer_images_per_s", "median"),
                                    median("peer_bf16", "infer_images_per_s", "median")),
        "train_same_layout_vs_peer_bf16": ratio(
            median("train_seed_layout", "train_images_per_s", "median"),
            median("peer_bf16", "train_images_per_s", "median")),
        "train_vs_peer_float32": ratio(median("train_float32", "train_images_per_s", "median"),
                                       median("peer", "train_images_per_s", "median")),
        "decode_cold": ratio(median("peer", "load_decode_s", "median"), median("decode", "cold_s", "median")),
        "time_to_accuracy": round(median("time_to_accuracy", "ratio"), 3) if median("time_to_accuracy", "ratio")
        else None,
    }


def _measures(r: dict, section: str):
    """(name, figures) of a section, without its carried-over marker."""
    return [(k, v) for k, v in r.get(section, {}).items() if isinstance(v, dict)]


def format_table(r: dict) -> str:
    peer = r.get("peer", {})
    peer_train = peer.get("train_images_per_s", {}).get("median")
    peer_infer = peer.get("infer_images_per_s", {}).get("median")
    lines = ["| measure | cxr | peer | speed ratio cxr:peer |", "|---|---|---|---|"]
    for precision in ("float32", "mixed_bfloat16"):
        if f"train_{precision}" in r:
            lines.append(row(f"seed CNN training, {precision} (img/s)",
                             r[f"train_{precision}"]["train_images_per_s"]["median"], peer_train))
    if "train_seed_layout" in r:
        same = r["train_seed_layout"]
        lines.append(row(f"seed CNN training, the seed's exact layout, {same['precision']} as `auto` picks "
                         "(img/s; peer in bfloat16)", same["train_images_per_s"]["median"],
                         r.get("peer_bf16", {}).get("train_images_per_s", {}).get("median")))
    for engine, v in _measures(r, "inference"):
        lines.append(row(f"inference, {engine} (img/s)", v["infer_images_per_s"]["median"], peer_infer))
        lines.append(row(f"single-image latency, {engine} (ms, warm)", v["single_image_ms"]["median"]))
    if "decode" in r:
        d = r["decode"]
        lines.append(row(f"decode {d['images']} images, cold, writing the cache (s)", d["cold_s"]["median"],
                         peer.get("load_decode_s", {}).get("median"), lower_is_better=True))
        lines.append(row(f"load {d['images']} images, warm cache vs peer decode (s)", d["warm_s"]["median"],
                         peer.get("load_decode_s", {}).get("median"), lower_is_better=True))
    if "transfer" in r:
        t = r["transfer"]
        lines.append(row("VGG16 transfer, cached features, end to end (s)", t["cached"]["total_s"]))
        lines.append(row("VGG16 transfer, base every epoch, end to end (s, est.)",
                         t["every_epoch"]["total_s_estimated"]))
        lines.append(f"| transfer speed-up, cached features | {t['speedup']:.1f}x | | |")
    if "demo" in r:
        earlier = " (earlier run)" if r["demo"].get("carried_over_from_an_earlier_run") else ""
        lines.append(row(f"make demo wall time (s){earlier}", r["demo"]["wall_s"]))
        lines.append(row(f"make demo peak RSS (MB){earlier}", r["demo"].get("peak_rss_mb",
                                                                             r["demo"].get("peak_rss_gb", 0) * 1024)))
        limits = r["demo"].get("limits", {}).get("steps", {})
        for step, seconds in r["demo"].get("steps_s", {}).items():
            shares = [f"{limits[step][f'share_of_{kind}_peak']:.0%} of the {kind} peak"
                      for kind in ("bfloat16", "float32") if limits.get(step, {}).get(f"share_of_{kind}_peak")]
            at = f", {limits[step]['gflop_per_s']:.1f} GFLOP/s = {', '.join(shares)}" if shares else ""
            lines.append(row(f"make demo step: {step} (s{at}){earlier}", seconds))
    if "ray_predict" in r:
        rp = r["ray_predict"]
        for name in ("local", "ray_1_worker", "ray_2_workers"):
            v = rp[name]
            lines.append(f"| predict {rp['files']:,} files, {name.replace('_', ' ')} | {v['images_per_s']:.0f} img/s, "
                         f"driver peak RSS {v['driver_peak_rss_mb']:.0f} MB | | |")
    if "time_to_accuracy" in r:
        t = r["time_to_accuracy"]
        name = f"time to validation AUC >= {t['target_val_auc']} from raw files (s)"
        if t["cxr"]["seconds"]:
            lines.append(row(name, t["cxr"]["seconds"], t["peer_bf16"]["seconds"], lower_is_better=True))
        else:
            lines.append(f"| {name} | not reached in {t.get('max_epochs', 'its')} epochs | | |")
    for engine, v in _measures(r, "cold_start"):
        lines.append(f"| one file from a cold start, `cxr predict --engine {engine}` (s) | {v['median_s']:.2f} | | |")
    if "sweep" in r:
        sw = r["sweep"]
        lines.append(f"| sweep overhead per trial (one-trial sweep - plain train) | {sw['overhead_per_trial_s']:.1f} s "
                     f"({sw['one_trial_sweep_s']:.1f} vs {sw['plain_train_s']:.1f} s) | | |")
    for clients, v in _measures(r, "load"):
        lines.append(f"| service, {clients} clients | {v['requests_per_s']:.1f} req/s, p50 {v['p50_ms']:.0f} ms, "
                     f"p95 {v['p95_ms']:.0f} ms, {v['errors']} errors | | |")
    lines += [f"| ratio {name} (cxr/peer) | {value if value is not None else 'not measured'} | | |"
              for name, value in r.get("ratios", {}).items()]
    return "\n".join(lines)
