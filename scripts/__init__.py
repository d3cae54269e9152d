"""Command-line entry points: `score-sde <mode>` (`scripts.main`) and benchmarks.

Scripts parse flags and call the library; they hold no logic a notebook would need.
"""
