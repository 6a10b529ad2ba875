"""Exercise checks for the course's functions, and the course's ``test_*`` names for them.

``check_<name>(learner_fn, ...)`` runs the learner's function and ours on the
same inputs and returns a :class:`CheckResult`; it never prints and never raises
for a wrong answer. The ``test_<name>`` aliases take the course test's arguments,
raise ``AssertionError(message)`` on failure and print one line on success, so a
course notebook's ``tests.test_get_WOV(get_WOV, model)`` works unchanged::

    from bracketlens.arena import checks as tests
    result = tests.check_get_WOV(get_WOV, model)
    result.passed, result.message
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from bracketlens.arena import (
    _checks_attribution,
    _checks_components,
    _checks_heads,
    _checks_neurons,
    _checks_truth,
)
from bracketlens.arena._checks_attribution import (
    check_get_activations,
    check_get_ln_fit,
    check_get_post_final_ln_dir,
    check_get_pre_final_ln_dir,
)
from bracketlens.arena._checks_components import (
    check_get_out_by_components,
    check_out_by_component_in_unbalanced_dir,
)
from bracketlens.arena._checks_heads import (
    check_get_attn_probs,
    check_get_pre_20_dir,
    check_get_q_and_k_for_given_input,
    check_get_WOV,
    check_out_by_component_in_pre_20_unbalanced_dir,
)
from bracketlens.arena._checks_neurons import (
    check_avg_squared_cos_sim,
    check_cos_sim_with_MLP_weights,
    check_embedding,
    check_get_out_by_neuron,
    check_get_out_by_neuron_in_20_dir,
    check_get_out_by_neuron_in_20_dir_less_memory,
)
from bracketlens.arena._checks_truth import (
    check_is_balanced_forloop,
    check_is_balanced_vectorized,
    check_is_balanced_vectorized_return_both,
    check_total_elevation_and_negative_failures,
)
from bracketlens.arena._compare import (
    ACTIVATION_TOL,
    DIRECTION_TOL,
    EXACT,
    WEIGHT_TOL,
    CheckResult,
    Tolerance,
)

# check name -> the tolerance it compares with
TOLERANCES: dict[str, Tolerance] = {
    **_checks_attribution.TOLERANCES,
    **_checks_components.TOLERANCES,
    **_checks_truth.TOLERANCES,
    **_checks_heads.TOLERANCES,
    **_checks_neurons.TOLERANCES,
}


def _course_test(check: Callable[..., CheckResult]) -> Callable[..., None]:
    """The course's ``test_<name>``: the check, an AssertionError on failure, one line on success."""

    @functools.wraps(check)
    def test(*args: object, **kwargs: object) -> None:
        result = check(*args, **kwargs)
        if not result.passed:
            raise AssertionError(result.message)
        print(
            f"All tests in `test_{result.name}` passed!"
        )  # the only print in the package's checks

    name = check.__name__.removeprefix("check_")
    test.__name__ = test.__qualname__ = f"test_{name}"
    test.__doc__ = f"Course alias of :func:`{check.__name__}`: raises AssertionError on failure."
    return test


test_get_activations = _course_test(check_get_activations)
test_get_post_final_ln_dir = _course_test(check_get_post_final_ln_dir)
test_get_ln_fit = _course_test(check_get_ln_fit)
test_get_pre_final_ln_dir = _course_test(check_get_pre_final_ln_dir)
test_get_out_by_components = _course_test(check_get_out_by_components)
test_out_by_component_in_unbalanced_dir = _course_test(check_out_by_component_in_unbalanced_dir)
test_is_balanced_forloop = _course_test(check_is_balanced_forloop)
test_is_balanced_vectorized = _course_test(check_is_balanced_vectorized)
test_is_balanced_vectorized_return_both = _course_test(check_is_balanced_vectorized_return_both)
test_total_elevation_and_negative_failures = _course_test(
    check_total_elevation_and_negative_failures
)
test_get_attn_probs = _course_test(check_get_attn_probs)
test_get_WOV = _course_test(check_get_WOV)
test_get_pre_20_dir = _course_test(check_get_pre_20_dir)
test_out_by_component_in_pre_20_unbalanced_dir = _course_test(
    check_out_by_component_in_pre_20_unbalanced_dir
)
test_get_out_by_neuron = _course_test(check_get_out_by_neuron)
test_get_out_by_neuron_in_20_dir = _course_test(check_get_out_by_neuron_in_20_dir)
test_get_out_by_neuron_in_20_dir_less_memory = _course_test(
    check_get_out_by_neuron_in_20_dir_less_memory
)
test_get_q_and_k_for_given_input = _course_test(check_get_q_and_k_for_given_input)
test_embedding = _course_test(check_embedding)
test_cos_sim_with_MLP_weights = _course_test(check_cos_sim_with_MLP_weights)
test_avg_squared_cos_sim = _course_test(check_avg_squared_cos_sim)

__all__ = [
    "ACTIVATION_TOL",
    "DIRECTION_TOL",
    "EXACT",
    "TOLERANCES",
    "WEIGHT_TOL",
    "CheckResult",
    "Tolerance",
    "check_avg_squared_cos_sim",
    "check_cos_sim_with_MLP_weights",
    "check_embedding",
    "check_get_WOV",
    "check_get_activations",
    "check_get_attn_probs",
    "check_get_ln_fit",
    "check_get_out_by_components",
    "check_get_out_by_neuron",
    "check_get_out_by_neuron_in_20_dir",
    "check_get_out_by_neuron_in_20_dir_less_memory",
    "check_get_post_final_ln_dir",
    "check_get_pre_20_dir",
    "check_get_pre_final_ln_dir",
    "check_get_q_and_k_for_given_input",
    "check_is_balanced_forloop",
    "check_is_balanced_vectorized",
    "check_is_balanced_vectorized_return_both",
    "check_out_by_component_in_pre_20_unbalanced_dir",
    "check_out_by_component_in_unbalanced_dir",
    "check_total_elevation_and_negative_failures",
    "test_avg_squared_cos_sim",
    "test_cos_sim_with_MLP_weights",
    "test_embedding",
    "test_get_WOV",
    "test_get_activations",
    "test_get_attn_probs",
    "test_get_ln_fit",
    "test_get_out_by_components",
    "test_get_out_by_neuron",
    "test_get_out_by_neuron_in_20_dir",
    "test_get_out_by_neuron_in_20_dir_less_memory",
    "test_get_post_final_ln_dir",
    "test_get_pre_20_dir",
    "test_get_pre_final_ln_dir",
    "test_get_q_and_k_for_given_input",
    "test_is_balanced_forloop",
    "test_is_balanced_vectorized",
    "test_is_balanced_vectorized_return_both",
    "test_out_by_component_in_pre_20_unbalanced_dir",
    "test_out_by_component_in_unbalanced_dir",
    "test_total_elevation_and_negative_failures",
]
