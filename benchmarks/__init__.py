"""migrator's benchmarks (issue 5): ``python -m benchmarks {sim,rig,fidelity,overhead}``.

Not part of the unit tests (machines are noisy); ``--quick`` runs a small
version of each, which the smoke tests in ``tests/unit`` and
``tests/functional`` run to keep them working.  See ``benchmarks/README.md``.
"""
