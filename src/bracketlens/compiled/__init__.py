"""The course's interpretation compiled back into weights.

``build_compiled()`` returns a :class:`~bracketlens.model.transformer.BracketTransformer`
of the course's exact architecture whose every weight was written by hand from the
story (tally, zero tests in MLP 0, a copy to position 0, the negative check). If
the story is complete, this model classifies every string correctly; the tests
check that exhaustively up to length 18.

Stages, one module each: :mod:`.basis` (what each residual direction carries),
:mod:`.layer0` (embeddings, tally heads, MLP 0), :mod:`.readout` (layer 2 and the
unembedding), :mod:`.build` (chains them).
"""

from bracketlens.compiled.build import DESCRIPTION, ROLES, build_compiled, compiled_state_dict

__all__ = ["DESCRIPTION", "ROLES", "build_compiled", "compiled_state_dict"]
