"""Jobs that cron (or a Render cron job) runs: refresh candles, verify predictions, retrain.

Each runs under a database lock named after it (``storage.lock``), so two runs of one job never
overlap, while different jobs and the API serving alongside are unaffected.
"""

from crypto_predictor.storage.lock import JobLock, JobLocked

__all__ = ["JobLock", "JobLocked"]
