"""Runs the benchmarks named on the command line (all by default), prints the table and writes
bench/results/latest.json. Started by bench/run, which installs everything first."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, ROOT, Ctx, Figure, machine_info

#: Run order: cheap and quiet first; the pod-kill benchmark starts a whole control plane.
ORDER = ["startup", "abort", "footprint", "lag", "proxy", "podkill", "k8s_abort", "netem_guest"]


def discover() -> dict[str, Any]:
    found = {p.stem[2:]: p for p in (ROOT / "bench").glob("b_*.py")}
    names = [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))
    return {n: importlib.import_module(f"b_{n}") for n in names}


def fmt(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if unit not in ("requests",) else f"{value:.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ["benchmark", "figure", "unit", "ours p50", "ours p95", "peer p50", "peer p95",
            "ours/peer", "target", "met"]
    lines = [head]
    for r in rows:
        peer = r["peer"] or {}
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        lines.append([r["bench"], r["name"] + (f" [{peer['name']}]" if peer else ""), r["unit"],
                      fmt(r["ours"]["median"], r["unit"]), fmt(r["ours"]["p95"], r["unit"]),
                      fmt(peer.get("median", math.nan), r["unit"]),
                      fmt(peer.get("p95", math.nan), r["unit"]),
                      "-" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x",
                      r["target"] or "-", met])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(result: dict[str, Any]) -> str:
    """The figures as a Markdown table, with the machine (for docs/benchmarks.md)."""
    lines = ["| benchmark | figure | unit | ours p50 | ours p95 | peer | peer p50 | peer p95 "
             "| ours/peer | target | met |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["figures"]:
        peer = r["peer"] or {}
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        ratio = "-" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x"
        lines.append(
            f"| {r['bench']} | {r['name']} | {r['unit']} | {fmt(r['ours']['median'], r['unit'])} "
            f"| {fmt(r['ours']['p95'], r['unit'])} | {peer.get('name', '-')} "
            f"| {fmt(peer.get('median', math.nan), r['unit'])} "
            f"| {fmt(peer.get('p95', math.nan), r['unit'])} | {ratio} | {r['target'] or '-'} "
            f"| {met} |")
    m = result["machine"]
    lines += ["", f"Measured {result['started'][:10]} ({result['started']} to "
              f"{result.get('finished', '?')}) on {m['cpu']}, {m['cores']} cores, "
              f"{m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}, Python {m['python']}, "
              f"commit {m['commit']}; peers: {m.get('chaos_toolkit', '')}; "
              f"{m.get('toxiproxy', '')}."]
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["--markdown"]:  # render a saved result: --markdown [FILE]
        path = Path(sys.argv[2]) if len(sys.argv) > 2 else RESULTS / "latest.json"
        print(markdown(json.loads(path.read_text())))
        return 0
    benches = discover()
    parser = argparse.ArgumentParser(description="chaos-runner benchmarks vs the peers")
    parser.add_argument("names", nargs="*", help=f"a subset of: {', '.join(benches)}")
    parser.add_argument("--quick", action="store_true", help="a few trials each (development)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    if args.list:
        for name, mod in benches.items():
            print(f"{name:10} {(mod.__doc__ or '').strip().splitlines()[0]}")
        return 0
    unknown = [n for n in args.names if n not in benches]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(benches)}")
    names = args.names or list(benches)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-bench-"))
    ctx = Ctx(python=sys.executable, chaos=str(Path(sys.executable).parent / "chaos"),
              ctk_venv=Path(os.environ["CTK_VENV"]), toxiproxy=os.environ["TOXIPROXY"],
              loadgen=os.environ["LOADGEN"], workdir=workdir, quick=args.quick)
    started = datetime.now(UTC)
    result: dict[str, Any] = {"started": started.isoformat(timespec="seconds"),
                              "machine": machine_info(ctx), "quick": args.quick,
                              "benchmarks": {}, "figures": []}
    failed: list[str] = []
    for name in names:
        print(f"== {name}: {(benches[name].__doc__ or '').strip().splitlines()[0]}", flush=True)
        t0 = time.monotonic()
        try:
            figures: list[Figure] = benches[name].run(ctx)
        except Exception:  # a broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            result["benchmarks"][name] = {"error": traceback.format_exc(limit=3)}
            continue
        took = time.monotonic() - t0
        rows = [f.summary() for f in figures]
        result["benchmarks"][name] = {"seconds": round(took, 1)}
        result["figures"].extend(rows)
        print(table(rows), flush=True)
        print(f"   ({took:.0f}s)\n", flush=True)
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print("== all figures")
    print(table(result["figures"]))
    m = result["machine"]
    print(f"\n{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
          f"kernel {m['kernel']}; commit {m['commit']}")
    print(f"wrote {args.out}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
