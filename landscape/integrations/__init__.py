"""Adapters that log a :class:`~landscape.Tracker` from training frameworks.

- :mod:`landscape.integrations.huggingface`: ``TrackerCallback``, a ``transformers``
  ``TrainerCallback`` (extra ``hf``);
- :mod:`landscape.integrations.lightning`: ``TrackerCallback``, a PyTorch Lightning
  ``Callback`` (extra ``lightning``).

Each module imports its framework; ``import landscape`` imports neither.
"""
