"""PNG plots for comparison reports, drawn with matplotlib's object API (Agg canvas, no pyplot global state).

Each function takes results (`method -> list over seeds of histories`, see `analysis`) and a file path, writes one
PNG and returns its path. Bands and error bars are ± one sample standard deviation over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .analysis import Results, accepted_per_class, cycle_aligned, final_metric, is_real_only, mean_std, metric_value

_DPI = 150


def _new_figure(width: float = 6.4, height: float = 4.2) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.grid(True, alpha=0.3)
    return figure, axes


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI, format="png")
    return path


def method_colours(results: Results) -> dict[str, str]:
    """One matplotlib colour per method, by its position in `results`: the same method has the same colour in every
    plot."""
    return {method: f"C{index % 10}" for index, method in enumerate(results)}


def _no_data(axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="0.4")
    axes.set_xticks([])
    axes.set_yticks([])


def plot_accuracy_vs_synthetic(results: Results, path: str | Path, metric: str = "accuracy") -> Path:
    """Validation `metric` against synthetic samples in the training data, one line per method.

    Points are cycles (mean over seeds of both coordinates); the band is ± one standard deviation of the metric.
    A method that never used synthetic data (real-only) is drawn as a horizontal line at its final mean.
    """
    figure, axes = _new_figure()
    colours = method_colours(results)
    for method, runs in results.items():
        if is_real_only(runs):
            mean, std, _ = mean_std([final_metric(history, metric) for history in runs])
            line = axes.axhline(mean, linestyle="--", color=colours[method], label=f"{method} (no synthetic data)")
            axes.axhspan(mean - std, mean + std, color=line.get_color(), alpha=0.12, linewidth=0)
            continue
        xs = cycle_aligned(runs, lambda cycle: float(cycle.get("num_synthetic_total", 0) or 0))
        ys = cycle_aligned(runs, lambda cycle: metric_value(cycle, metric))
        cycles = [c for c in ys if ys[c] and xs.get(c)]
        x = np.asarray([mean_std(xs[c])[0] for c in cycles])
        stats = np.asarray([mean_std(ys[c])[:2] for c in cycles]).reshape(-1, 2)
        (line,) = axes.plot(x, stats[:, 0], marker="o", markersize=4, color=colours[method], label=method)
        axes.fill_between(x, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], color=line.get_color(), alpha=0.2)
    label = metric.removeprefix("eval_").replace("_", " ")
    axes.set_xlabel("synthetic samples in the training data")
    axes.set_ylabel(f"validation {label}")
    axes.set_title(f"{label.capitalize()} vs synthetic data (mean ± std over seeds)")
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_entropy_per_cycle(results: Results, path: str | Path, measure: str = "entropy") -> Path:
    """Mean uncertainty `measure` on each cycle's targets, before (dashed) and after (solid) that cycle's retraining."""
    figure, axes = _new_figure()
    colours = method_colours(results)
    drawn = False
    for method, runs in results.items():
        after = cycle_aligned(runs, lambda cycle: (cycle.get("uncertainty_after") or {}).get(measure))
        before = cycle_aligned(runs, lambda cycle: (cycle.get("uncertainty_before") or {}).get(measure))
        after_cycles = [c for c, values in after.items() if values]
        if not after_cycles:
            continue
        drawn = True
        stats = np.asarray([mean_std(after[c])[:2] for c in after_cycles])
        (line,) = axes.plot(
            after_cycles,
            stats[:, 0],
            marker="o",
            markersize=4,
            color=colours[method],
            label=f"{method}: after retraining",
        )
        axes.fill_between(
            after_cycles, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], color=line.get_color(), alpha=0.2
        )
        before_cycles = [c for c, values in before.items() if values]
        if before_cycles:
            means = [mean_std(before[c])[0] for c in before_cycles]
            axes.plot(
                before_cycles,
                means,
                linestyle="--",
                marker="x",
                markersize=4,
                color=line.get_color(),
                label=f"{method}: before (targets)",
            )
    if not drawn:
        _no_data(axes, f"no {measure} measurements (no synthesis cycles)")
    else:
        axes.set_xlabel("cycle")
        axes.set_ylabel(f"mean {measure} on the targeted examples")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(fontsize="small")
    axes.set_title(f"Targeted-set {measure} per cycle (mean ± std over seeds)")
    return _save(figure, path)


def _class_order(labels: set[str]) -> list[str]:
    return sorted(labels, key=lambda label: (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label))


def plot_synthetic_per_class(
    results: Results, path: str | Path, label_names: Mapping[str, str] | Sequence[str] | None = None
) -> Path:
    """Accepted synthetic samples per class, summed over cycles, one bar group per class and one bar per method.

    Args:
        label_names (`Mapping[str, str]` or `Sequence[str]`, *optional*): Names for the class ids on the x axis.
    """
    figure, axes = _new_figure(width=7.2)
    colours = method_colours(results)
    per_method = {
        method: [accepted_per_class(history) for history in runs]
        for method, runs in results.items()
        if not is_real_only(runs)
    }
    per_method = {method: counts for method, counts in per_method.items() if any(sum(c.values()) for c in counts)}
    if not per_method:
        _no_data(axes, "no synthetic samples were accepted")
    else:
        classes = _class_order({label for counts in per_method.values() for c in counts for label in c})
        width = 0.8 / len(per_method)
        positions = np.arange(len(classes))
        for offset, (method, counts) in enumerate(per_method.items()):
            stats = np.asarray([mean_std([c.get(label, 0) for c in counts])[:2] for label in classes])
            axes.bar(
                positions + (offset - (len(per_method) - 1) / 2) * width,
                stats[:, 0],
                width=width,
                yerr=stats[:, 1],
                capsize=2,
                color=colours[method],
                label=method,
            )
        if label_names is None:
            names = classes
        elif isinstance(label_names, Mapping):
            names = [str(label_names.get(label, label)) for label in classes]
        else:
            names = [str(label_names[int(label)]) if label.isdigit() else label for label in classes]
        axes.set_xticks(positions, names, rotation=30 if max(map(len, names)) > 3 else 0)
        axes.set_xlabel("class")
        axes.set_ylabel("accepted synthetic samples")
        axes.legend(fontsize="small")
        axes.grid(False, axis="x")
    axes.set_title("Accepted synthetic samples per class (mean ± std over seeds)")
    return _save(figure, path)
