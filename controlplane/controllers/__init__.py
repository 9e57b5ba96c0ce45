"""Controllers: level-driven loops that make what is match what should be.

Each controller is a pure `reconcile` (in its own package) plus a thin shell
run by `runner.ControllerManager`, which feeds it keys from shared informers
through a work queue (one worker per key at a time, requeue with back-off).
"""
