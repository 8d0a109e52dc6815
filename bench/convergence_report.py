#!/usr/bin/env python3
"""Medians, ratios and the issue's targets from convergence.sh result lines.

    python3 bench/convergence_report.py RESULTS_FILE

Targets (issue 8): into the kernel in at most half of BIRD's time, the RIB no slower than BIRD,
no more memory per route than BIRD. Times are compared from Established (daemon start-up is
not BGP convergence; the from-start figures are in the table too). BIRD installs each route into
the kernel as it imports it, so its RIB time with a kernel protocol is its FIB time; "RIB alone"
is BIRD without a kernel protocol (DUT birdrib) when the run has it. Memory per route is the
marginal cost: (peak RSS at the largest N - peak RSS at the smallest N) / (difference in N),
so the fixed size of each program does not count; with one N it is RSS / N.
"""
import statistics
import sys

COLS = ["est_s", "rib_s", "fib_s", "rib_from_est_s", "fib_from_est_s", "rss_mb", "cpu_s", "wd_fib_s", "other_s"]
RATIO_COLS = ["rib_from_est_s", "fib_from_est_s", "rib_s", "fib_s", "rss_mb", "cpu_s"]


def parse(path):
    rows = []
    for line in open(path):
        if line.startswith("#") or "dut=" not in line:
            continue
        kv = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if kv.get("error"):
            print(f"# failed run: {line.strip()}")
            continue
        rows.append(kv)
    return rows


def median(rows, col):
    vals = []
    for r in rows:
        try:
            vals.append(float(r.get(col, "NA")))
        except ValueError:
            pass
    return statistics.median(vals) if vals else None


def fmt(x):
    if x is None:
        return "NA"
    return "%.2f" % x if abs(x) < 100 else "%.0f" % x


def main():
    rows = parse(sys.argv[1])
    groups = {}
    for r in rows:
        groups.setdefault((int(r["n"]), r["dut"]), []).append(r)
    med = {k: {c: median(v, c) for c in COLS} for k, v in groups.items()}
    print("| N | DUT | runs | " + " | ".join(COLS) + " |")
    print("|---:|---|---:|" + "---:|" * len(COLS))
    for (n, dut) in sorted(groups):
        print(f"| {n} | {dut} | {len(groups[(n, dut)])} | " + " | ".join(fmt(med[(n, dut)][c]) for c in COLS) + " |")
    print()
    print("| N | ratio | " + " | ".join(RATIO_COLS) + " |")
    print("|---:|---|" + "---:|" * len(RATIO_COLS))
    for n in sorted({n for n, _ in groups}):
        for dut, ref in (("tortie", "bird"), ("tortie", "birdrib"), ("tortie", "frr"), ("tortierib", "birdrib"),
                         ("tortie", "tortieplain"), ("tortieplain", "bird")):
            a, b = med.get((n, dut)), med.get((n, ref))
            if not a or not b:
                continue
            cells = [fmt(a[c] / b[c]) if a[c] is not None and b[c] else "NA" for c in RATIO_COLS]
            print(f"| {n} | {dut}/{ref} | " + " | ".join(cells) + " |")
    print()
    per_route = {}
    for dut in sorted({d for _, d in groups} - {"birdrib", "tortierib", "tortieplain"}):
        ns = sorted(n for n, d in groups if d == dut and med[(n, d)]["rss_mb"] is not None)
        if not ns:
            continue
        lo, hi = ns[0], ns[-1]
        if hi > lo:
            b = (med[(hi, dut)]["rss_mb"] - med[(lo, dut)]["rss_mb"]) * 1048576 / (hi - lo)
            how = f"marginal {lo}..{hi}"
        else:
            b = med[(hi, dut)]["rss_mb"] * 1048576 / hi
            how = f"RSS/N at {hi}"
        per_route[dut] = b
        print(f"memory per route {dut}: {b:.0f} bytes ({how})")
    print()
    for n in sorted({n for n, _ in groups}):
        t, b = med.get((n, "tortie")), med.get((n, "bird"))
        r = med.get((n, "birdrib")) or b
        rib_ref = "BIRD RIB alone" if med.get((n, "birdrib")) else "BIRD"
        if not t or not b or None in (t["fib_from_est_s"], b["fib_from_est_s"], t["rib_from_est_s"], r["rib_from_est_s"]):
            continue
        fib_ok = t["fib_from_est_s"] <= 0.5 * b["fib_from_est_s"]
        rib_ok = t["rib_from_est_s"] <= r["rib_from_est_s"]
        print(f"target N={n}: FIB <= 0.5 x BIRD: {'met' if fib_ok else 'MISSED'} "
              f"({t['fib_from_est_s']:.2f} s vs {b['fib_from_est_s']:.2f} s); "
              f"RIB <= {rib_ref}: {'met' if rib_ok else 'MISSED'} ({t['rib_from_est_s']:.2f} s vs {r['rib_from_est_s']:.2f} s)")
        tr = med.get((n, "tortierib"))
        if tr and tr["rib_from_est_s"] is not None and med.get((n, "birdrib")):
            ok = tr["rib_from_est_s"] <= r["rib_from_est_s"]
            print(f"target N={n}: RIB alone (tortierib) <= BIRD RIB alone: {'met' if ok else 'MISSED'} "
                  f"({tr['rib_from_est_s']:.2f} s vs {r['rib_from_est_s']:.2f} s)")
    if "tortie" in per_route and "bird" in per_route:
        ok = per_route["tortie"] <= per_route["bird"]
        print(f"target memory per route <= BIRD: {'met' if ok else 'MISSED'} "
              f"({per_route['tortie']:.0f} vs {per_route['bird']:.0f} bytes)")


if __name__ == "__main__":
    main()
