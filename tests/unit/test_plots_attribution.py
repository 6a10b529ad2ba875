import plotly.graph_objects as go
import pytest
import torch

from bracketlens.data import FailureGroup
from bracketlens.plots.attribution import component_histograms, group_scatter, length_histogram


def test_component_histograms_one_panel_per_component():
    values = torch.randn(10, 50)
    balanced = torch.arange(50) % 2 == 0
    fig = component_histograms(values, [f"c{i}" for i in range(10)], balanced)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 20  # balanced and unbalanced per component
    assert sum(len(t.x) for t in fig.data[:2]) == 50
    assert [a.text for a in fig.layout.annotations] == [f"c{i}" for i in range(10)]


def test_group_scatter_one_trace_per_present_group():
    groups = torch.tensor([int(FailureGroup.BALANCED)] * 3 + [int(FailureGroup.BOTH)] * 2)
    fig = group_scatter(
        torch.arange(5.0), torch.arange(5.0), groups, x_label="a", y_label="b", title="t",
        hover=["s0", "s1", "s2", "s3", "s4"],
    )  # fmt: skip
    assert [t.name for t in fig.data] == ["both failures", "balanced"]
    assert list(fig.data[0].x) == [3.0, 4.0]
    assert list(fig.data[1].text) == ["s0", "s1", "s2"]


def test_length_histogram_counts():
    fig = length_histogram(torch.tensor([2, 2, 4, 40]))
    assert list(fig.data[0].x) == [2, 4, 40] and list(fig.data[0].y) == [2, 1, 1]


def test_finished_figure_is_the_one_a_validated_template_gives():
    """finish() sets the template without validating it again; the figure is the same."""
    import json

    from bracketlens.plots._style import TEMPLATE, finish

    fast = finish(go.Figure(go.Bar(x=[1, 2], y=[3, 4])), "t")
    slow = go.Figure(go.Bar(x=[1, 2], y=[3, 4]))
    slow.update_layout(template=TEMPLATE)
    finish(slow, "t")
    assert json.loads(fast.to_json()) == json.loads(slow.to_json())
    assert fast.layout.template.layout.plot_bgcolor == "white"  # simple_white's, not plotly's
    with pytest.raises(ValueError):  # and the layout validates again afterwards
        fast.update_layout(height="tall")
