"""Recipes (installed as ``agentcomm.experiments.recipes``): the scripts that trained and
recorded the shipped policies and decoders, and the DPPO sweep and learning-curve
experiment, with their YAML in ``configs/``.

Each runs as ``python -m agentcomm.experiments.recipes.NAME`` or
``python experiments/recipes/NAME.py``; importing one does no work.
"""
