"""Benchmarks (installed as ``agentcomm.experiments.benchmarks``): throughput, profiling,
GPU and configuration-fuzzing scripts.

Each runs as ``python -m agentcomm.experiments.benchmarks.NAME`` or
``python experiments/benchmarks/NAME.py``; importing one does no work.
"""
