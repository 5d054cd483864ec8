"""Offline: walk-forward evaluation, the training pipeline that writes bundles, the re-test of a
saved bundle and its plots. Serving never imports this package."""
