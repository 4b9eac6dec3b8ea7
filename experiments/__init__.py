"""Experiments of agentcomm (installed as ``agentcomm.experiments``): the main job
``agentcomm run``, config-driven sweeps ``agentcomm sweep``, the statistics and the
bounds behind the figures, and the benchmark scripts (run as files)."""
