"""Turn a benchmark run into the tables and charts of the performance page.

    python docs/perf.py                  # the newest benchmarks/results/*.json
    python docs/perf.py RESULTS.json     # a given run
    python docs/perf.py --check          # the committed files are up to date
    python docs/perf.py docs/performance/results.json   # after editing this script

``benchmarks/run.py`` writes one JSON file per run (git-ignored). This script
reads one and writes, under ``docs/performance/``:

* ``results.json``: the run, without the per-sample details, committed so that
  the page (and ``--check``) can be rebuilt without running the benchmarks;
* ``summary.inc.rst``, ``targets.inc.rst``, ``measures.inc.rst``: what the
  page includes (run facts, the targets table, every median);
* ``targets.svg``: each target's margin (how far the ratio is past the
  threshold, log scale);
* ``clients.svg``: operations per second of the sync clients.

Only the standard library is used; the output depends on the JSON alone, so
the same run always gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
OUT = HERE / "performance"
RESULTS = HERE.parent / "benchmarks" / "results"

Run = dict[str, Any]


# -- reading -----------------------------------------------------------------------


def newest_run() -> Path:
    runs = sorted(RESULTS.glob("*.json"))
    if not runs:
        raise SystemExit(f"no benchmark results in {RESULTS}: run benchmarks/run.py first")
    return runs[-1]


def trim(run: Run) -> Run:
    """The run without per-sample details (they are only for debugging)."""
    out = {k: v for k, v in run.items() if k != "measures"}
    out["measures"] = [{k: v for k, v in m.items() if k != "details"} for m in run["measures"]]
    return out


# -- formatting ----------------------------------------------------------------------


def number(value: float) -> str:
    """Three significant digits, thousands separated: 46,900 / 0.257 / 28.3."""
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    rounded = round(value, digits)
    return f"{rounded:,.{digits}f}"


def spread(samples: Sequence[float]) -> float:
    """Half the interquartile range (what benchmarks/run.py reports)."""
    if len(samples) < 2:
        return 0.0
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return (q[2] - q[0]) / 2


def margin(target: Run) -> float | None:
    """How many times past its threshold a target is (>= 1: met)."""
    if not target.get("ratio"):
        return None
    ratio = float(target["ratio"])
    threshold = float(target["threshold"])
    return ratio / threshold if target["op"] == ">=" else threshold / ratio


def list_table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]) -> str:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: " + " ".join(str(w) for w in widths),
        "",
    ]
    for row in [header, *rows]:
        first = True
        for cell in row:
            lines.append(("   * - " if first else "     - ") + (cell or "\\-"))
            first = False
    return "\n".join(lines) + "\n"


def rst_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|")


# -- the include files ---------------------------------------------------------------


def summary_rst(run: Run, source: str) -> str:
    load = run.get("load_average", {})
    start = load.get("start", [None])[0]
    end = load.get("end", [None])[0]
    opts = run.get("options", {})
    rounds = opts.get("sizes", {}).get("rounds")
    facts = [
        f"* run: ``{run.get('timestamp', '?')}``, commit ``{run.get('commit', '?')}``"
        f" (file ``{source}``)",
        f"* Python {run.get('python', '?')} on ``{run.get('machine', '?')}``,"
        f" CPUs {', '.join(str(c) for c in run.get('cpus', []))}"
        f" (servers on CPU {run.get('server_cpu', '?')})",
        f"* {rounds} rounds{' (--quick)' if opts.get('quick') else ''},"
        f" {number(float(run.get('duration_s', 0)))} s in all",
    ]
    if start is not None and end is not None:
        facts.append(f"* load average {start:.2f} before, {end:.2f} after")
    if opts.get("only"):
        facts.append(f"* sections: {opts['only']}")
    skipped = run.get("skipped_sections") or {}
    for name, reason in sorted(skipped.items()):
        facts.append(f"* section {name} skipped: {rst_text(str(reason))}")
    return "\n".join(facts) + "\n"


def targets_rst(run: Run) -> str:
    rows = []
    for t in run.get("targets", []):
        ratio = t.get("ratio")
        limit = t.get("limit_ratio")
        shown = "\\-" if ratio is None else number(ratio)
        if limit is not None:
            shown += f" (raw socket: {number(limit)})"
        rows.append(
            [
                t["id"],
                rst_text(t["description"]),
                rst_text(t["ratio_label"]),
                shown,
                f"{t['op']} {float(t['threshold']):g}",
                f"**{t['status']}**" if t["status"] != "PASS" else t["status"],
            ]
        )
    return list_table(
        ["id", "what", "ratio", "measured", "target", "status"], rows, [6, 40, 22, 16, 8, 8]
    )


def measures_rst(run: Run) -> str:
    rows = []
    for m in run.get("measures", []):
        better = "higher is better" if m.get("higher_is_better") else "lower is better"
        first = True
        for key, name in m["impls"].items():
            median = m.get("medians", {}).get(key)
            error = m.get("errors", {}).get(key)
            if median is None:
                value = f"not measured: {rst_text(str(error))}" if error else "\\-"
            else:
                value = f"{number(median)} ± {number(spread(m['samples'].get(key, [])))}"
            rows.append(
                [
                    f"{rst_text(m['title'])} ({m['unit']}, {better})" if first else "",
                    rst_text(name),
                    value,
                ]
            )
            first = False
    return list_table(["benchmark", "implementation", "median ± spread"], rows, [50, 30, 20])


# -- the charts ----------------------------------------------------------------------

FONT = "font-family='sans-serif' font-size='12'"
GREEN, RED, GREY, INK = "#2e7d32", "#c62828", "#9e9e9e", "#222222"


def svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img'>\n"
        f"<title>{escape(title)}</title>\n"
        f"<rect width='{width}' height='{height}' fill='white'/>\n" + "\n".join(body) + "\n</svg>\n"
    )


def targets_svg(run: Run) -> str:
    targets = run.get("targets", [])
    left, right, top, row = 330, 150, 40, 24
    plot = 360
    width = left + plot + right
    height = top + row * len(targets) + 30
    lo, hi = -3.0, 5.0  # log2 of the margin: 1/8x .. 32x

    def x(m: float) -> float:
        v = min(hi, max(lo, math.log2(m)))
        return left + (v - lo) / (hi - lo) * plot

    body = [
        f"<text x='10' y='18' {FONT} font-weight='bold' fill='{INK}'>"
        "margin over each target (log scale): right of the line, the target is met</text>"
    ]
    for tick in range(int(lo), int(hi) + 1):
        tx = x(2.0**tick)
        label = f"{2**tick:g}x" if tick >= 0 else f"1/{2**-tick}x"
        body.append(
            f"<line x1='{tx:.1f}' y1='{top - 6}' x2='{tx:.1f}' y2='{height - 24}' "
            f"stroke='{'#555555' if tick == 0 else '#e0e0e0'}' "
            f"stroke-width='{2 if tick == 0 else 1}'/>"
        )
        body.append(
            f"<text x='{tx:.1f}' y='{height - 8}' {FONT} text-anchor='middle' "
            f"fill='#555555'>{label}</text>"
        )
    for i, t in enumerate(targets):
        y = top + i * row
        m = margin(t)
        label = f"{t['id']}  {t['description']}"
        if len(label) > 46:
            label = label[:45] + "…"
        body.append(
            f"<text x='{left - 8}' y='{y + 15}' {FONT} text-anchor='end' fill='{INK}'>"
            f"{escape(label)}</text>"
        )
        if m is None:
            body.append(
                f"<text x='{x(1.0) + 6:.1f}' y='{y + 15}' {FONT} fill='{GREY}'>"
                f"{escape(t['status'])}</text>"
            )
            continue
        x0, x1 = sorted((x(1.0), x(m)))
        colour = GREEN if m >= 1 else RED
        body.append(
            f"<rect x='{x0:.1f}' y='{y + 4}' width='{max(x1 - x0, 1):.1f}' height='{row - 8}' "
            f"fill='{colour}'/>"
        )
        text = f"{number(t['ratio'])} ({t['op']} {float(t['threshold']):g})"
        body.append(
            f"<text x='{max(x(m), x(1.0)) + 6:.1f}' y='{y + 15}' {FONT} fill='{INK}'>"
            f"{escape(text)}</text>"
        )
    return svg(width, height, "pyxs benchmark targets", body)


CLIENT_MEASURES = ["client.read", "client.write", "client.dir", "client.tx"]
CLIENT_COLOURS = {"pyxs": "#1565c0", "libxenstore": "#ef6c00", "pyxs041": "#8e8e8e"}


def clients_svg(run: Run) -> str:
    measures = {m["id"]: m for m in run.get("measures", [])}
    groups = [measures[i] for i in CLIENT_MEASURES if i in measures]
    impls = [k for k in CLIENT_COLOURS if any(k in m.get("medians", {}) for m in groups)]
    left, top, bar, gap = 290, 48, 16, 14
    plot, right = 380, 90
    width = left + plot + right
    height = top + len(groups) * (len(impls) * bar + gap) + 10
    body = [
        f"<text x='10' y='18' {FONT} font-weight='bold' fill='{INK}'>"
        "sync clients, operations per second relative to libxenstore (longer is faster)</text>"
    ]
    lx = 10
    for key in impls:
        name = groups[0]["impls"].get(key, key) if groups else key
        body.append(f"<rect x='{lx}' y='28' width='12' height='12' fill='{CLIENT_COLOURS[key]}'/>")
        body.append(f"<text x='{lx + 16}' y='38' {FONT} fill='{INK}'>{escape(name)}</text>")
        lx += 30 + 8 * len(name)
    y = top
    for m in groups:
        medians = m.get("medians", {})
        base = medians.get("libxenstore") or max(medians.values() or [1.0])
        scale = max((v / base for k, v in medians.items() if k in impls), default=1.0)
        title = m["title"]
        body.append(
            f"<text x='{left - 8}' y='{y + len(impls) * bar / 2 + 4:.1f}' {FONT} "
            f"text-anchor='end' fill='{INK}'>{escape(title)}</text>"
        )
        for key in impls:
            value = medians.get(key)
            if value is not None:
                w = plot * (value / base) / scale
                body.append(
                    f"<rect x='{left}' y='{y}' width='{w:.1f}' height='{bar - 3}' "
                    f"fill='{CLIENT_COLOURS[key]}'/>"
                )
                body.append(
                    f"<text x='{left + w + 4:.1f}' y='{y + bar - 5}' {FONT} fill='{INK}'>"
                    f"{value / base:.2f}x</text>"
                )
            y += bar
        y += gap
    return svg(width, height, "pyxs client throughput", body)


# -- main ------------------------------------------------------------------------------


def render(run: Run, source: str) -> dict[str, str]:
    """Every output file's name and text."""
    return {
        "results.json": json.dumps(run, indent=1) + "\n",
        "summary.inc.rst": summary_rst(run, source),
        "targets.inc.rst": targets_rst(run),
        "measures.inc.rst": measures_rst(run),
        "targets.svg": targets_svg(run),
        "clients.svg": clients_svg(run),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, help="a benchmarks/run.py JSON file")
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate from the committed results.json and fail if anything differs",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="output directory")
    args = parser.parse_args(argv)

    if args.check:
        committed = json.loads((args.out / "results.json").read_text())
        source = committed.get("source", "results.json")
        stale = [
            name
            for name, text in render(committed, source).items()
            if not (args.out / name).exists() or (args.out / name).read_text() != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)} (run python docs/perf.py)", file=sys.stderr)
            return 1
        return 0

    path = args.results or newest_run()
    run = trim(json.loads(path.read_text()))
    run["source"] = run.get("source") or path.name  # results.json keeps its origin
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render(run, run["source"]).items():
        (args.out / name).write_text(text)
    print(f"wrote {args.out} from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
