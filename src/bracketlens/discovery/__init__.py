"""Circuit discovery without a template: edge scores, faithfulness and the node optimum.

:func:`~bracketlens.discovery.discover.discover` is the entry point; the graph
(:mod:`.graph`), the counterfactual pairs (:mod:`.pairs`), the patched runs
(:mod:`.runs`), the edge scores (:mod:`.scores`) and the exact node optimum
(:mod:`.optimum`) are its parts.
"""
