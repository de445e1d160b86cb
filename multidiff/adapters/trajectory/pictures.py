"""Pictures of plans and executed paths: over the maze walls for PointMaze, the angle from upright
over time otherwise (matplotlib, imported only when drawing)."""

from __future__ import annotations

import numpy as np


def maze_axes(ax, walls, scaling: float = 1.0) -> None:
    """Draw the walls ``(rows, cols)`` of a maze on ``ax`` in world coordinates (cells ``scaling`` wide)."""
    from matplotlib.patches import Rectangle

    walls = np.asarray(walls, bool)
    rows, cols = walls.shape
    for r, c in zip(*np.nonzero(walls)):
        x0, y0 = (c - cols / 2) * scaling, (rows / 2 - r - 1) * scaling
        ax.add_patch(Rectangle((x0, y0), scaling, scaling, color="0.75", linewidth=0))
    ax.set_xlim(-cols * scaling / 2, cols * scaling / 2)
    ax.set_ylim(-rows * scaling / 2, rows * scaling / 2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def angle_from_top(states: np.ndarray) -> np.ndarray:
    """Pendulum's angle from upright in [0, pi] from its ``(cos, sin, ...)`` states (else the first feature)."""
    return np.abs(np.arctan2(states[:, 1], states[:, 0])) if states.shape[1] >= 2 else states[:, 0]


def plan_png(drawn: dict, title: str, size: float = 2.6) -> bytes:
    """Up to 8 panels: over the maze walls, the plans (dashed) and the path (solid) from the start
    (green) to the goal (red star); without walls, the angle from upright over time of the
    executed path beside the reference controller's from the same start."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    episodes = drawn["planner"]
    count = max(1, len(episodes))
    ncol = min(4, count)
    nrow = (count + ncol - 1) // ncol
    figure = Figure(figsize=(size * ncol, size * nrow), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrow, ncol, squeeze=False).reshape(-1)
    reference = drawn.get("reference") or []
    for index, ax in enumerate(axes):
        if index >= len(episodes):
            ax.set_axis_off()
            continue
        episode = episodes[index]
        states = episode["states"]
        if drawn.get("walls") is not None:
            maze_axes(ax, drawn["walls"])
            for planned in episode["plans"]:
                ax.plot(planned[:, 0], planned[:, 1], "--", color="tab:orange", linewidth=1)
            ax.plot(states[:, 0], states[:, 1], color="tab:blue", linewidth=1.2)
            ax.plot(*states[0, :2], "o", color="tab:green", markersize=5)
            if episode["goal"] is not None:
                ax.plot(*episode["goal"], "*", color="tab:red", markersize=9)
        else:
            ax.plot(angle_from_top(states), color="tab:blue", linewidth=1.2, label="planner")
            if index < len(reference):
                ax.plot(angle_from_top(reference[index]["states"]), color="0.5", linewidth=1, label="reference")
            ax.set_ylim(-0.1, np.pi + 0.1)
            ax.set_xlabel("step", fontsize=7)
            ax.set_ylabel("angle from upright", fontsize=7)
            ax.legend(fontsize=6)
        ax.set_title(f"episode {index}", fontsize=8)
    figure.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plan_title(report: dict) -> str:
    """The picture's title from the figures of a plan report."""
    parts = [f"{report.get('env_id')}: "]
    parts.append("plans (dashed), executed paths (solid)" if report.get("success_rate") is not None
                 else "the planner beside the reference controller")
    if report.get("success_rate") is not None:
        parts.append(f"; success {report['success_rate']:.0%}")
    if report.get("mean_return") is not None:
        parts.append(f"; mean return {report['mean_return']:.1f}")
    return "".join(parts)


__all__ = ["angle_from_top", "maze_axes", "plan_png", "plan_title"]
