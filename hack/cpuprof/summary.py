#!/usr/bin/env python3
"""Print node-burst's figures (median/p95/p99) from berth-bench results.json files."""
import json, sys
for path in sys.argv[1:]:
    d = json.load(open(path))
    m = d["machine"]
    print(f"{path}: load {m['load_start']} -> {m['load_end']} (mean {m['load1_mean']:.1f})")
    for w in d["workloads"]:
        for f in w["figures"]:
            for o in f["outcomes"]:
                s = o.get("summary")
                if not s:
                    print(f"  {f['id']:24} {o['status']}")
                    continue
                print(f"  {f['id']:24} n={s['n']:<4} p50 {s['median']:9.2f}  p95 {s['p95']:9.2f}  p99 {s['p99']:9.2f} {f['unit']}")
