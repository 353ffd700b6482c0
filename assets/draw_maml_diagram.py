"""Draw the two loops of MAML: per-task adaptation inside, one meta-update of θ outside.

Writes ``maml_two_loops.png`` and ``maml_two_loops.svg`` next to this script, or into the
folder given as ``--out-dir``::

    python assets/draw_maml_diagram.py
    python assets/draw_maml_diagram.py --out-dir /tmp/figures

Used in the README and in the notebooks that introduce the outer loop.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as MplPath

NAME = "maml_two_loops"

# Colours: blue for the inner loop (adaptation), orange for the outer loop (meta-update).
INNER_FILL, INNER_EDGE = "#e3eefb", "#2f6db5"
OUTER_FILL, OUTER_EDGE = "#fff3e2", "#d9822b"
NODE_FILL = "white"
META_GRAD = "#c0392b"
TEXT = "#222222"

NUM_TASKS = 3
TASK_X = (2.3, 6.0, 9.7)  # centre of each task column
COLUMN_WIDTH = 3.2


def _box(ax, x, y, text, width, height, fill, edge, fontsize=11, weight="normal"):
    """A rounded box centred on (x, y) with a centred label."""
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=fill,
            edgecolor=edge,
            linewidth=1.6,
            zorder=3,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=TEXT, weight=weight, zorder=4)


def _note(ax, x, y, text, color, fontsize=10, weight="normal"):
    """A left-aligned label starting at (x, y)."""
    ax.text(x, y, text, ha="left", va="center", fontsize=fontsize, color=color, weight=weight, zorder=4)


def _arrow(ax, start, end, color=TEXT, style="-|>", linestyle="-", linewidth=1.4):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            mutation_scale=14,
            color=color,
            linewidth=linewidth,
            linestyle=linestyle,
            shrinkA=0,
            shrinkB=0,
            zorder=2,
        )
    )


def _region(ax, x0, y0, x1, y1, fill, edge):
    ax.add_patch(
        FancyBboxPatch(
            (x0, y0),
            x1 - x0,
            y1 - y0,
            boxstyle="round,pad=0.0,rounding_size=0.25",
            facecolor=fill,
            edgecolor=edge,
            linewidth=1.8,
            zorder=1,
        )
    )


def draw() -> Figure:
    """Build the diagram.

    Returns:
        A matplotlib ``Figure`` (not attached to pyplot), 12 × 8.2 inches.
    """
    fig = Figure(figsize=(12, 8.2))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 8.2)
    ax.set_axis_off()

    # Outer loop: everything that happens once per meta-update.
    _region(ax, 0.25, 0.3, 11.75, 7.45, OUTER_FILL, OUTER_EDGE)
    ax.text(
        0.5,
        7.18,
        "outer loop: one meta-update of θ per batch of tasks (step size β, query sets)",
        fontsize=12,
        color=OUTER_EDGE,
        weight="bold",
        va="center",
    )
    title = "MAML: an inner loop per task inside one outer loop"
    ax.text(6.0, 7.9, title, ha="center", va="center", fontsize=15, weight="bold", color=TEXT)

    # The shared initialisation.
    theta_y = 6.55
    theta_label = r"$\theta$   shared initialisation"
    _box(ax, 6.0, theta_y, theta_label, 3.6, 0.55, NODE_FILL, OUTER_EDGE, fontsize=12, weight="bold")

    inner_top, inner_bottom = 5.85, 2.95
    node_ys = (4.9, 4.05, 3.3)
    query_y = 2.3
    bus_y = 6.05  # θ is handed to every task along this line
    chain_dx = -0.7  # the chain of φ's sits left of centre, its labels to the right
    ax.plot([6.0, 6.0], [theta_y - 0.28, bus_y], color=TEXT, linewidth=1.4, zorder=2)
    ax.plot([TASK_X[0] + chain_dx, TASK_X[-1] + chain_dx], [bus_y, bus_y], color=TEXT, linewidth=1.4, zorder=2)
    for i, x in enumerate(TASK_X, start=1):
        cx = x + chain_dx
        # Inner loop: k gradient steps on this task's support set.
        _region(ax, x - COLUMN_WIDTH / 2, inner_bottom, x + COLUMN_WIDTH / 2, inner_top, INNER_FILL, INNER_EDGE)
        header = rf"inner loop · task $\mathcal{{T}}_{i}$"
        _note(ax, cx + 0.3, inner_top - 0.22, header, INNER_EDGE, fontsize=10.5, weight="bold")
        _note(ax, cx + 0.3, inner_top - 0.5, "adapts on its support set", INNER_EDGE, fontsize=9.5)
        labels = (rf"$\phi_{i}^{{(0)}} = \theta$", rf"$\phi_{i}^{{(1)}}$", rf"$\phi_{i} = \phi_{i}^{{(k)}}$")
        widths = (1.3, 0.9, 1.3)
        for y, label, width in zip(node_ys, labels, widths):
            _box(ax, cx, y, label, width, 0.42, NODE_FILL, INNER_EDGE)

        _arrow(ax, (cx, bus_y), (cx, node_ys[0] + 0.23))  # θ copied into the task
        _arrow(ax, (cx, node_ys[0] - 0.22), (cx, node_ys[1] + 0.22), color=INNER_EDGE)
        _arrow(ax, (cx, node_ys[1] - 0.22), (cx, node_ys[2] + 0.22), color=INNER_EDGE, linestyle=(0, (2, 2)))
        step = r"$\phi \leftarrow \phi - \alpha\nabla L_{\mathrm{support}}(\phi)$"
        _note(ax, cx + 0.3, (node_ys[0] + node_ys[1]) / 2, step, INNER_EDGE)
        _note(ax, cx + 0.3, (node_ys[1] + node_ys[2]) / 2, r"$\dots$ $k$ steps", INNER_EDGE)

        # Judge the adapted parameters on the task's query set.
        _box(ax, x, query_y, rf"$L_{{\mathrm{{query}}}}(\phi_{i})$  on query set", 2.9, 0.5, NODE_FILL, OUTER_EDGE)
        _arrow(ax, (cx, node_ys[2] - 0.21), (cx, query_y + 0.25))

    # Sum of the query losses: the meta-loss.
    meta_y = 1.15
    meta_label = r"meta-loss   $\sum_i L_{\mathrm{query}}(\phi_i)$"
    _box(ax, 6.0, meta_y, meta_label, 3.8, 0.6, NODE_FILL, OUTER_EDGE, fontsize=12, weight="bold")
    for x in TASK_X:
        _arrow(ax, (x, query_y - 0.25), (6.0 + (x - 6.0) * 0.35, meta_y + 0.3))

    # Meta-gradient: back from the meta-loss, through every inner step, to θ.
    route = MplPath([(7.9, meta_y), (11.4, meta_y), (11.4, theta_y), (7.8, theta_y)])
    ax.add_patch(FancyArrowPatch(path=route, arrowstyle="-|>", mutation_scale=18, color=META_GRAD, linewidth=2.4))
    ax.text(
        11.55,
        (meta_y + theta_y) / 2,
        "meta-gradient, back through every inner step",
        rotation=90,
        ha="left",
        va="center",
        fontsize=10.5,
        color=META_GRAD,
    )
    ax.text(
        9.65,
        meta_y - 0.6,
        r"$\theta \leftarrow \theta - \beta\,\nabla_\theta \sum_i L_{\mathrm{query}}(\phi_i)$",
        ha="center",
        va="center",
        fontsize=13,
        color=META_GRAD,
    )
    return fig


def main(argv: list[str] | None = None) -> list[Path]:
    """Draw the diagram and save it as PNG and SVG.

    Args:
        argv: command-line arguments; ``--out-dir DIR`` picks the folder (default: this one).

    Returns:
        The paths written, PNG first.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--out-dir", type=Path, default=here, help="folder for the PNG and SVG (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    fig = draw()
    png, svg = args.out_dir / f"{NAME}.png", args.out_dir / f"{NAME}.svg"
    # Fixed ids and no timestamp, so redrawing an unchanged diagram gives identical files.
    with matplotlib.rc_context({"svg.hashsalt": NAME}):
        fig.savefig(png, dpi=150, facecolor="white", metadata={"Software": None})
        fig.savefig(svg, facecolor="white", metadata={"Date": None, "Creator": None})
    for path in (png, svg):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return [png, svg]


if __name__ == "__main__":
    main()
