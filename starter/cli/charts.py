"""Charts of the reports, drawn by matplotlib (the optional extra `reports`) on its Agg canvas,
as PNG or SVG bytes: no window, no display, no global pyplot state.

matplotlib is imported only when a chart is drawn, so the CLI starts without it and says how
to install it when a chart is asked for.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from starter.cli.common import UserError

INSTALL_HINT = "install the reports extra: pip install 'opportunities[reports]'"
ImageFormat = Literal["png", "svg"]
LABEL_LENGTH = 40
"""A label longer than this is cut (with an ellipsis) so that the bars keep their room."""
PALETTE = ["#4C72B0", "#55A868", "#C44E52", "#8172B2", "#CCB974", "#64B5CD", "#8C8C8C"]


@dataclass(frozen=True)
class Bars:
    """One panel of bars: a group per label, a bar per series (or the series stacked)."""

    title: str
    labels: list[str]
    series: dict[str, list[float]]
    """Each series' value per label, in the order of `labels`."""
    axis: str = ""
    """What the values measure (the value axis's label)."""
    horizontal: bool = True
    """Labels down the side, the first on top: a funnel reads top to bottom."""
    stacked: bool = False


@dataclass(frozen=True)
class Chart:
    title: str
    panels: list[Bars] = field(default_factory=list)


def matplotlib_figure() -> Any:
    """matplotlib's `Figure` class; without matplotlib, a `UserError` saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return Figure


def render(chart: Chart, image_format: ImageFormat) -> bytes:
    """The chart as PNG or SVG bytes."""
    figure_class = matplotlib_figure()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    panels = chart.panels or [Bars(title="", labels=[], series={})]
    height = sum(_panel_height(panel) for panel in panels) + 0.8
    figure = figure_class(figsize=(9, height), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(_text(chart.title), fontsize=13)
    for axes, panel in zip(
        figure.subplots(len(panels), 1, squeeze=False)[:, 0], panels, strict=True
    ):
        _draw(axes, panel)
    buffer = io.BytesIO()
    metadata = {"Date": None} if image_format == "svg" else {}
    with warnings.catch_warnings():  # a glyph the bundled font lacks is drawn as a box
        warnings.simplefilter("ignore")
        logging.getLogger("matplotlib").setLevel(logging.ERROR)
        figure.savefig(buffer, format=image_format, dpi=100, metadata=metadata)
    return buffer.getvalue()


def _panel_height(panel: Bars) -> float:
    if not panel.horizontal:
        return 3.5
    return max(2.0, 0.35 * len(panel.labels) * max(1, 1 if panel.stacked else len(panel.series)))


def _draw(axes: Any, panel: Bars) -> None:
    axes.set_title(_text(panel.title), fontsize=11, loc="left")
    if not panel.labels:
        axes.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return
    positions = list(range(len(panel.labels)))
    count = len(panel.series)
    width = 0.8 if panel.stacked else 0.8 / max(count, 1)
    base = [0.0] * len(positions)
    for index, (name, values) in enumerate(panel.series.items()):
        offset = 0.0 if panel.stacked else (index - (count - 1) / 2) * width
        spots = [p + offset for p in positions]
        colour = PALETTE[index % len(PALETTE)]
        if panel.horizontal:
            axes.barh(spots, values, height=width, left=base, label=_text(name), color=colour)
        else:
            axes.bar(spots, values, width=width, bottom=base, label=_text(name), color=colour)
        if panel.stacked:
            base = [b + v for b, v in zip(base, values, strict=True)]
    labels = [_text(label) for label in panel.labels]
    if panel.horizontal:
        axes.set_yticks(positions, labels=labels)
        axes.invert_yaxis()
        axes.set_xlabel(_text(panel.axis))
    else:
        axes.set_xticks(positions, labels=labels, rotation=45 if len(labels) > 6 else 0)
        axes.set_ylabel(_text(panel.axis))
    if count > 1:
        axes.legend(fontsize=8)


def _text(value: str) -> str:
    """A label as plain text: cut to `LABEL_LENGTH`, its `$` never read as mathtext."""
    if len(value) > LABEL_LENGTH:
        value = value[: LABEL_LENGTH - 1] + "…"
    return value.replace("$", r"\$")
