"""What only the dashboard's process runs: the launcher with its password gate (``python -m
jobs.dashboard.gate``) and the confined, cached thumbnails. Imports jobs.intake and jobs.store;
never the worker, Ray or the runner (the pages import this, never an engine)."""
