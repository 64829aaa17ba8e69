"""The continuous-query runtime (DESIGN.md §8): planning (plan.py), the window operator (operator.py) with window
assignment (assign.py), partial aggregates (partials.py), changelog output (changes.py), watermarks
(watermarks.py) and job rounds (rounds.py).
"""
