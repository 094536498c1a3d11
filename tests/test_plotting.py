"""Figures draw what they are given, in the order that reads right."""

from __future__ import annotations

import pandas as pd


def test_efficiency_points_are_joined_by_dictionary_size() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from bliss_utils.evaluation import plotting

    # 05's table: the ImageNet dictionary first, then the English sizes
    table = pd.DataFrame({"entries": [1860, 1000, 5000], "seconds": [1.0, 0.5, 2.0], "auroc": [90.0, 89.0, 91.0]})
    fig, axes = plotting.new_figure(ncols=2)
    plotting.plot_efficiency(axes[0], table)
    for ax, column in zip(axes[0], ("seconds", "auroc")):
        x, y = ax.lines[0].get_data()
        assert list(x) == [1000, 1860, 5000]
        assert list(y) == list(table.set_index("entries").loc[[1000, 1860, 5000], column])
