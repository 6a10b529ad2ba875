"""Hook names from short names, as TransformerLens's ``utils.get_act_name`` gives them.

>>> act_name("z", 2)
'blocks.2.attn.hook_z'
>>> act_name("resid_mid", 1)
'blocks.1.hook_resid_mid'
>>> act_name("post", 0)
'blocks.0.mlp.hook_post'
>>> act_name("scale", 1, "ln1")
'blocks.1.ln1.hook_scale'
>>> act_name("scale")
'ln_final.hook_scale'
>>> act_name("embed")
'hook_embed'
"""

from __future__ import annotations

from bracketlens.errors import BracketLensError

# short name -> the module path inside a block that holds its hook
_IN_BLOCK = {
    **{name: "attn" for name in ("q", "k", "v", "attn_scores", "pattern", "z", "result")},
    "pre": "mlp",
    "post": "mlp",
    **{name: "" for name in ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")},
    # split inputs, as TransformerLens's use_split_qkv_input names them (block level)
    **{name: "" for name in ("q_input", "k_input", "v_input", "mlp_in")},
}
_TOP = ("embed", "pos_embed", "tokens")
_LAYER_NORMS = ("ln1", "ln2")


def act_name(name: str, layer: int | None = None, ln: str | None = None) -> str:
    """The full hook name of ``name`` (``"z"``, ``"resid_mid"``, ``"post"``, ...) in ``layer``.

    ``ln`` picks a LayerNorm's hook (``name`` ``"scale"`` or ``"normalized"``): ``"ln1"`` or
    ``"ln2"`` of ``layer``, or the final LayerNorm when ``layer`` is None.
    """
    if ln is not None or (layer is None and name in ("scale", "normalized")):
        if name not in ("scale", "normalized"):
            raise BracketLensError(f"a LayerNorm has hooks 'scale' and 'normalized', not {name!r}")
        if layer is None:
            return f"ln_final.hook_{name}"
        if ln not in _LAYER_NORMS:
            raise BracketLensError(f"unknown LayerNorm {ln!r}: use 'ln1' or 'ln2'")
        return f"blocks.{layer}.{ln}.hook_{name}"
    if name in _TOP:
        return f"hook_{name}"
    where = _IN_BLOCK.get(name)
    if where is None:
        raise BracketLensError(f"unknown hook {name!r}: use one of {sorted([*_IN_BLOCK, *_TOP])}")
    if layer is None:
        raise BracketLensError(f"hook {name!r} lives in a block: give its layer")
    return f"blocks.{layer}.{where + '.' if where else ''}hook_{name}"


def ln_name(layer: int | None, which: str = "ln1") -> str:
    """The module path of a LayerNorm: ``blocks.L.ln1``/``ln2``, or ``ln_final`` for None."""
    return "ln_final" if layer is None else f"blocks.{layer}.{which}"
