"""Pick one preference pair per prompt from reward-scored responses, both ways.

Run: python examples/select_pairs.py
"""

from dpov2 import select_pairs

# Three prompts with 4, 3 and 1 responses, flattened; offsets delimit each prompt's responses.
scores = [0.2, 1.3, -0.4, 1.3, 0.9, 0.1, 0.5, 2.0]
lengths = [120, 40, 300, 310, 80, 20, 95, 12]  # characters
offsets = [0, 4, 7, 8]

for method in ("max_min", "max_max", "max_random", "random"):
    fast = select_pairs(
        scores, offsets, method=method, lengths=lengths, length_penalty=0.001, seed=7
    )
    reference = select_pairs(
        scores,
        offsets,
        method=method,
        lengths=lengths,
        length_penalty=0.001,
        seed=7,
        use_fast=False,
    )
    assert (fast.chosen == reference.chosen).all() and (fast.rejected == reference.rejected).all()
    print(
        f"{method:>10}: chosen={fast.chosen.tolist()} rejected={fast.rejected.tolist()} "
        f"{fast.counts()}"
    )
