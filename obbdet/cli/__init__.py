"""Command-line entry points: ``obbdet-train`` / ``python train.py`` and ``obbdet-infer`` / ``python infer.py``.

The checkout's ``train.py`` and ``infer.py`` call these ``main`` functions, so both spellings run the same code.
"""
