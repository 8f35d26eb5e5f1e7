"""The runner daemon: the supervisor's loop (supervisor), one job's items in flight (items), local
worker processes (pool) and their respawning, drain, the disk reserve, sizing, engine pinning and the
heartbeat. The top layer below the CLI: imports jobs.ray, jobs.worker and everything under them."""
