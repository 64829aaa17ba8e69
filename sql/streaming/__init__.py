"""The continuous-query runtime (docs/DESIGN.md §8): planning (plan.py), the window operator (operator.py)
with its open windows' rows (state.py), what windows emit (emit.py) and its snapshot bytes (snapshot.py),
window assignment (assign.py), partial aggregates (partials.py), changelog output (changes.py),
watermarks (watermarks.py) and job rounds (rounds.py).
"""
