#!/usr/bin/env python3
"""A preview of the Grafana dashboard without Grafana: draws each panel of
monitoring/grafana-dashboard.json at its grid position, with its title, its type (as a
placeholder of that kind of visualisation: no data is shown) and its queries, as SVG.

    python3 monitoring/render-dashboard.py [DASHBOARD.json] [--svg OUT.svg] [--png OUT.png]

Defaults: the repository's dashboard, docs/grafana-dashboard.svg, docs/grafana-dashboard.png.
The PNG is converted from the SVG by rsvg-convert (Debian package librsvg2-bin); without it only
the SVG is written, and the script says so. Standard library only; the output depends only on
the dashboard, so tests/monitoring_assets.rs can check the committed preview is current.
"""
import json
import math
import os
import shutil
import subprocess
import sys
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Grafana's grid: 24 columns; a row unit is 30 px high. Drawn at half Grafana's width.
COLUMNS = 24
COL_W = 50
ROW_H = 30
GAP = 4
MARGIN = 12
HEADER_H = 40

# Grafana's dark theme.
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "#2b2f36"
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
SERIES = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2"]
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, monospace"
# Characters of the 9 px monospace font per pixel of width.
MONO_CHAR_W = 5.5


def clip(text, width_px, char_w):
    """`text` cut to fit `width_px`, with an ellipsis when cut."""
    room = max(int(width_px / char_w), 4)
    return text if len(text) <= room else text[: room - 1] + "…"


def placeholder(kind, x, y, w, h, seed):
    """Shapes that say what kind of panel this is, without data."""
    out = []
    colour = SERIES[seed % len(SERIES)]
    if kind == "stat":
        out.append(f'<text x="{x + w / 2:.0f}" y="{y + h / 2 + 12:.0f}" font-family="{FONT}" font-size="30" '
                   f'font-weight="bold" fill="{colour}" text-anchor="middle">–</text>')
    elif kind == "timeseries":
        for line in range(2):
            pts = []
            for i in range(41):
                px = x + w * i / 40
                wave = math.sin((i + seed * 3 + line * 7) / 5.0) * 0.3 + math.sin((i + seed) / 2.3) * 0.1
                py = y + h * (0.55 + line * 0.15 - wave * 0.6)
                pts.append(f"{px:.1f},{py:.1f}")
            out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{SERIES[(seed + line) % len(SERIES)]}" '
                       f'stroke-width="1.5" opacity="0.8"/>')
        for i in range(1, 4):
            gy = y + h * i / 4
            out.append(f'<line x1="{x}" y1="{gy:.0f}" x2="{x + w}" y2="{gy:.0f}" stroke="{BORDER}" stroke-width="1"/>')
    elif kind == "state-timeline":
        lanes = 3
        for lane in range(lanes):
            ly = y + lane * h / lanes + 2
            cut = w * (0.55 + 0.15 * lane)
            out.append(f'<rect x="{x}" y="{ly:.0f}" width="{cut:.0f}" height="{h / lanes - 4:.0f}" fill="#73bf69" opacity="0.7"/>')
            out.append(f'<rect x="{x + cut:.0f}" y="{ly:.0f}" width="{w * 0.08:.0f}" height="{h / lanes - 4:.0f}" fill="#f2495c" opacity="0.7"/>')
            out.append(f'<rect x="{x + cut + w * 0.08:.0f}" y="{ly:.0f}" width="{w - cut - w * 0.08:.0f}" '
                       f'height="{h / lanes - 4:.0f}" fill="#73bf69" opacity="0.7"/>')
    elif kind == "table":
        rows = max(int(h // 16), 2)
        for r in range(rows):
            ry = y + r * 16
            fill = BORDER if r == 0 else PANEL
            out.append(f'<rect x="{x}" y="{ry:.0f}" width="{w}" height="15" fill="{fill}" stroke="{BORDER}"/>')
    else:
        out.append(f'<text x="{x + w / 2:.0f}" y="{y + h / 2:.0f}" font-family="{FONT}" font-size="11" '
                   f'fill="{MUTED}" text-anchor="middle">{escape(kind)}</text>')
    return out


def panel_svg(p, seed):
    g = p["gridPos"]
    x = MARGIN + g["x"] * COL_W
    y = MARGIN + HEADER_H + g["y"] * ROW_H
    w = g["w"] * COL_W - GAP
    h = g["h"] * ROW_H - GAP
    title = escape(p.get("title", ""))
    kind = p.get("type", "")
    if kind == "row":
        return [f'<text x="{x + 4}" y="{y + 20}" font-family="{FONT}" font-size="15" font-weight="bold" '
                f'fill="{TEXT}">⌄ {title}</text>']
    out = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="{PANEL}" stroke="{BORDER}"/>',
           f'<text x="{x + 8}" y="{y + 17}" font-family="{FONT}" font-size="12" font-weight="bold" '
           f'fill="{TEXT}">{escape(clip(p.get("title", ""), w - 70, 7))}</text>',
           f'<text x="{x + w - 8}" y="{y + 17}" font-family="{FONT}" font-size="9" fill="{MUTED}" '
           f'text-anchor="end">{escape(kind)}</text>']
    queries = [t.get("expr", "") for t in p.get("targets", []) if t.get("expr")]
    query_h = 12 * len(queries)
    body_top = y + 26
    body_h = h - 26 - query_h - 8
    if body_h > 12:
        out += placeholder(kind, x + 8, body_top, w - 16, body_h, seed)
    for i, q in enumerate(queries):
        qy = y + h - 6 - 12 * (len(queries) - 1 - i)
        out.append(f'<text x="{x + 8}" y="{qy}" font-family="{MONO}" font-size="9" fill="{MUTED}">'
                   f'{escape(clip(q, w - 16, MONO_CHAR_W))}</text>')
    return out


def render(dashboard):
    panels = dashboard["panels"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width = 2 * MARGIN + COLUMNS * COL_W
    height = 2 * MARGIN + HEADER_H + bottom * ROW_H
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}">',
           f'<rect width="{width}" height="{height}" fill="{BACKGROUND}"/>',
           f'<text x="{MARGIN}" y="{MARGIN + 22}" font-family="{FONT}" font-size="20" fill="{TEXT}">'
           f'{escape(dashboard.get("title", ""))}</text>']
    variables = [v.get("name", "") for v in dashboard.get("templating", {}).get("list", [])]
    if variables:
        out.append(f'<text x="{width - MARGIN}" y="{MARGIN + 22}" font-family="{FONT}" font-size="11" fill="{MUTED}" '
                   f'text-anchor="end">{escape("  ".join("$" + v for v in variables))} · preview: no data</text>')
    for seed, p in enumerate(panels):
        out += panel_svg(p, seed)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    source = os.path.join(HERE, "grafana-dashboard.json")
    svg_path = os.path.join(REPO, "docs", "grafana-dashboard.svg")
    png_path = os.path.join(REPO, "docs", "grafana-dashboard.png")
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--svg" and args:
            svg_path = args.pop(0)
        elif a == "--png" and args:
            png_path = args.pop(0)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        elif not a.startswith("-"):
            source = a
        else:
            print(f"render-dashboard.py: unknown argument {a!r}", file=sys.stderr)
            return 2
    with open(source) as f:
        svg = render(json.load(f))
    with open(svg_path, "w") as f:
        f.write(svg)
    print(f"wrote {svg_path}")
    if png_path == "-":
        return 0
    if not shutil.which("rsvg-convert"):
        print("render-dashboard.py: rsvg-convert not found (Debian package librsvg2-bin): PNG not written",
              file=sys.stderr)
        return 0
    subprocess.run(["rsvg-convert", "-f", "png", "-o", png_path, svg_path], check=True)
    print(f"wrote {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
