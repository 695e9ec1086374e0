"""Benchmarks of lisa_ros: what the model, fine-tuning and the running node cost. docs/benchmarks.md
quotes their tables and says how each was measured.

Run them from the lisa_ros package folder (where this package, and the ``testbed`` it shares with
the tests, are importable), with the venv's python::

    cd lisa_ros
    ../.venv/bin/python -m benchmarks.model                 # inference, tiny model, CPU, seconds
    ../.venv/bin/python -m benchmarks.model --full-size-7b --precision bf16 --device cuda
    ../.venv/bin/python -m benchmarks.finetune              # one optimizer step
    ../.venv/bin/python -m benchmarks.node [--cpu]          # the node's own cost per frame
    ../.venv/bin/python -m benchmarks.follow                # following in the running node
    ../.venv/bin/python -m benchmarks.reload                # memory across model reloads
    benchmarks/gpu.sh OUT_DIR                               # the GPU rows of docs/benchmarks.md

Each module's docstring says what it measures; ``--help`` lists its options. What they share
(timing, memory, tables, the model to run, the local DDS graph) is in :mod:`benchmarks.common`.
Without arguments each runs on the tiny random-weight checkpoint on the CPU, which is what the
tests (test/unit/test_benchmark_*.py, test/graph/test_node_reload.py) run. ``cpu_share`` is
``node --cpu``'s measurement, not a command of its own.
"""
