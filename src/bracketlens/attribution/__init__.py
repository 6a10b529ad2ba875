"""Attribution: LayerNorm fits, the unbalanced direction, components, neurons."""

from bracketlens.attribution.components import (
    ComponentStack,
    centre_on_balanced,
    component_labels,
    components_in_direction,
    out_by_components,
    unbalanced_attribution,
)
from bracketlens.attribution.directions import (
    unbalanced_direction_post_ln,
    unbalanced_direction_pre_ln,
)
from bracketlens.attribution.layernorm import LayerNormFit, fit_layernorm

__all__ = [
    "ComponentStack",
    "LayerNormFit",
    "centre_on_balanced",
    "component_labels",
    "components_in_direction",
    "fit_layernorm",
    "out_by_components",
    "unbalanced_attribution",
    "unbalanced_direction_post_ln",
    "unbalanced_direction_pre_ln",
]
