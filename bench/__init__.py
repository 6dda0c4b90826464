"""Benchmarks: ``empathy bench`` (:mod:`bench.run`, whole jobs) and micro-benchmarks run by hand
(``python -m bench.decode_speed``, ``python -m bench.vision_preprocess``); none is part of the test suite."""
