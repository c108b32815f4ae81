"""Experiment recipes: simulated calls, the speaker corpus and its split, back-end training.

What the benchmarks (``benchmarks/``) and the scripts (``scripts/train_backend.py``,
``scripts/make_samples.py``) share, and what a deployment never runs. ``voicecheck`` never imports
this package (``tests/test_layout.py`` checks it) and the wheel does not ship it (pyproject's
``[tool.setuptools] packages``). Modules, in the order a recipe uses them:

* :mod:`recipes.simulate`: line noise, one simulated call side, two-party stereo calls, WAV files;
* :mod:`recipes.corpus`: the real-speech corpus as speakers, the TRAIN / TUNE / EVAL split;
* :mod:`recipes.material`: a speaker's audio cut into enrollment, calls and LDA segments;
* :mod:`recipes.embed_cache`: all of it embedded by the product's Engine, cached on disk;
* :mod:`recipes.backend`: the LDA back-end trained on TRAIN speakers (the shipped one);
* :mod:`recipes.trials`: trials among speakers, the scoring chains, the product's Scorer on them;
* :mod:`recipes.profile`: thresholds and calibrations per mode from TUNE (the shipped profile).
* :mod:`recipes.machine`: the CPU a benchmark ran on and its ``--precision`` option.
"""
