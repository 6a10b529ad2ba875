"""Course-compatible names: the ARENA "balanced bracket classifier" exercises on bracketlens.

A course notebook runs unchanged with these imports::

    from bracketlens.arena import *  # get_activations, get_ln_fit, BracketsDataset, ...
    from bracketlens.arena import checks as tests  # tests.test_get_WOV(get_WOV, model)

Every function is a thin wrapper over the general API (any layer, head and
position); the course's own choices (head 2.0, position 1) live in
:mod:`bracketlens.arena.course`. :mod:`bracketlens.arena.checks` compares a
learner's implementation with ours and explains the difference.
"""

from bracketlens.arena.course import (
    add_perma_hooks_to_mask_pad_tokens,
    avg_squared_cos_sim,
    cos_sim_with_MLP_weights,
    embedding,
    get_activations,
    get_attn_probs,
    get_ln_fit,
    get_out_by_components,
    get_out_by_neuron,
    get_out_by_neuron_in_20_dir,
    get_out_by_neuron_in_20_dir_less_memory,
    get_post_final_ln_dir,
    get_pre_20_dir,
    get_pre_final_ln_dir,
    get_q_and_k_for_given_input,
    get_WOV,
    load_model,
)
from bracketlens.arena.datasets import (
    BracketsDataset,
    SimpleTokenizer,
    is_balanced_forloop,
    is_balanced_vectorized,
    is_balanced_vectorized_return_both,
)

__all__ = [
    "BracketsDataset",
    "SimpleTokenizer",
    "add_perma_hooks_to_mask_pad_tokens",
    "avg_squared_cos_sim",
    "cos_sim_with_MLP_weights",
    "embedding",
    "get_WOV",
    "get_activations",
    "get_attn_probs",
    "get_ln_fit",
    "get_out_by_components",
    "get_out_by_neuron",
    "get_out_by_neuron_in_20_dir",
    "get_out_by_neuron_in_20_dir_less_memory",
    "get_post_final_ln_dir",
    "get_pre_20_dir",
    "get_pre_final_ln_dir",
    "get_q_and_k_for_given_input",
    "is_balanced_forloop",
    "is_balanced_vectorized",
    "is_balanced_vectorized_return_both",
    "load_model",
]
