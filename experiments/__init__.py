"""Experiments of agentcomm (installed as ``agentcomm.experiments``): the main job
``agentcomm run``, config-driven sweeps ``agentcomm sweep``, the statistics and the
bounds behind the figures; the training and recording scripts in
:mod:`agentcomm.experiments.recipes` and the benchmark scripts in
:mod:`agentcomm.experiments.benchmarks`."""
