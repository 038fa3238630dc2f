"""Run every benchmark in fresh processes, several times, and print the median ratios
against their baselines.  ``python -m bench [--runs 5] [--write docs/performance.md]``
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
from datetime import date

from .common import fresh_process, median_of


def measure(runs: int) -> list[tuple[str, str, str, bool]]:
    """(what, measured, target, met) rows."""
    rows = []
    st = median_of([fresh_process("stats_bench") for _ in range(runs)])
    floor = st["floor_s"]
    for label, key, target in (("warm", "warm", 3), ("cold", "cold", 10)):
        ratio = st[f"{key}_ratio"]
        rows.append((f"weight_stats(ResNet50), {label}",
                     f"{ratio:.1f}x floor ({st[f'{key}_s'] * 1e3:.0f} ms; floor "
                     f"{st.get(f'{key}_floor_s', floor) * 1e3:.1f} ms)",
                     f"<= {target}x floor", ratio <= target))
    rows.append(("the seeds' way (get_weights + numpy)",
                 f"{st['seeds_s'] / floor:.0f}x floor ({st['seeds_s'] * 1e3:.0f} ms)",
                 "baseline", True))
    for model in ("resnet50", "1000", "10000"):
        d = median_of([fresh_process("display_bench", model) for _ in range(runs)])
        ratio = d["explorer_s"] / d["summary_s"]
        name = "ResNet50" if model == "resnet50" else f"{int(model):,} layers"
        limit_ok = ratio <= 0.5 and (model != "10000" or d["explorer_s"] <= 0.1)
        rows.append((f"LayerExplorer first display, {name}",
                     f"{ratio:.2f}x summary() ({d['explorer_s'] * 1e3:.0f} ms vs "
                     f"{d['summary_s'] * 1e3:.0f} ms)",
                     "<= 0.5x summary" + (", <= 100 ms" if model == "10000" else ""), limit_ok))
    b = median_of([fresh_process("bytes_bench") for _ in range(runs)])
    first = b["first_display_bytes"] - b["explorer_bundle_bytes"]
    rows.append(("explore(ResNet50) first display (widget openings included)",
                 f"{first / 1e3:.1f} KB + {b['explorer_bundle_bytes'] / 1e3:.1f} KB JS/CSS once",
                 "<= 100 KB + bundles", first <= 100_000))
    rows.append(("each selection change", f"{b['selection_change_bytes_max'] / 1e3:.1f} KB",
                 "<= 8 KB", b["selection_change_bytes_max"] <= 8_000))
    rows.append(("widgets per dashboard (3 layers / ResNet50)",
                 f"{b['widgets_tiny_model']:.0f} / {b['widgets_resnet50']:.0f}", "the same",
                 b["widgets_tiny_model"] == b["widgets_resnet50"]))
    rows.append(("overview figure's payload, 1,000 layers",
                 f"{b['overview_bytes_1000'] / 1e3:.1f} KB ({b['overview_rows_1000']:.0f} rows)",
                 "measured", True))
    n = fresh_process("notebook_size_bench")  # bytes: the same every run
    rows.append(("saved notebook, 3 dashboards, with widget state",
                 f"{n['with_state_bytes'] / 1e6:.2f} MB (plotly.js {n['plotly_js_copies']:.0f}x)",
                 "<= 7 MB", n["with_state_bytes"] <= 7e6))
    rows.append(("saved notebook without widget state, largest dashboard's outputs",
                 f"{n['largest_dashboard_outputs_bytes'] / 1e3:.0f} KB (notebook "
                 f"{n['without_state_bytes'] / 1e3:.0f} KB)", "<= 300 KB a dashboard",
                 n["largest_dashboard_outputs_bytes"] <= 300e3))
    i = fresh_process("import_bench")
    rows.append(("import hubwidgets",
                 f"{i['import_s'] * 1e3:.0f} ms ({i['import_s'] / i['json_import_s']:.1f}x "
                 f"import json); TensorFlow imported: {i['imports_tensorflow']}",
                 "<= 300 ms, no TensorFlow",
                 i["import_s"] <= 0.3 and not i["imports_tensorflow"]))
    m = median_of([fresh_process("memory_bench") for _ in range(runs)])
    share = m["peak_added_bytes"] / m["weight_bytes"]
    rows.append(("peak RSS added by explore(ResNet50) + all stats",
                 f"{share:.1%} of weight bytes ({m['peak_added_bytes'] / 1e6:.1f} MB of "
                 f"{m['weight_bytes'] / 1e6:.0f} MB)", "<= 10%", share <= 0.10))
    # repeats inside, interleaved; the fits' own spread needs more repetitions than the rest
    w = fresh_process("watch_bench", str(max(runs, 7)), "3")
    rows.append(("watch() default on fit (1M-param CNN + BN, 2,048 32x32 images, 3 epochs)",
                 f"{w['watch_overhead']:+.1%} of fit, median of {w['repetitions']} paired "
                 f"fits ({w['fit_watch_s']:.1f} s vs {w['fit_none_s']:.1f} s); its hooks "
                 f"{w['watch_hooks_share']:.1%}", "<= 5% of fit", w["watch_overhead"] <= 0.05))
    rows.append(("keras.callbacks.TensorBoard(histogram_freq=1), same fit",
                 f"{w['tensorboard_overhead']:+.1%} of fit; watch costs "
                 f"{w['watch_vs_tensorboard']:.2f}x its fit time", "watch cheaper",
                 w["watch_vs_tensorboard"] < 1))
    return rows


def table(rows: list[tuple[str, str, str, bool]]) -> str:
    lines = ["| What | Measured (median) | Target | Met |", "|---|---|---|---|"]
    lines += [f"| {w} | {m} | {t} | {'yes' if ok else '**no**'} |" for w, m, t, ok in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per benchmark")
    parser.add_argument("--write", help="also write the table into this markdown file, "
                        "between the BENCH markers")
    args = parser.parse_args()
    missing = [name for name in ("tensorboard",)
               if importlib.util.find_spec(name) is None]
    if missing:  # found now, not after ten minutes of the other benchmarks
        sys.exit(f"The benchmarks need {', '.join(missing)} (the watch benchmark compares with "
                 "TensorBoard's callback): pip install -e '.[bench]', then run again.")
    result = table(measure(args.runs))
    print(result)
    if args.write:
        header = (f"Measured {date.today()} on {platform.machine()}, {platform.python_version()}, "
                  f"`python -m bench --runs {args.runs}`, median of {args.runs} fresh processes "
                  "each.\n\n")
        with open(args.write) as f:
            text = f.read()
        start, end = "<!-- BENCH -->", "<!-- /BENCH -->"
        before, _, rest = text.partition(start)
        _, _, after = rest.partition(end)
        with open(args.write, "w") as f:
            f.write(f"{before}{start}\n{header}{result}\n{end}{after}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
