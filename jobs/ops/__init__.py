"""What an operator sees of a job folder and a machine: health, diagnosis, runner liveness, metrics,
logs, GPU and mount probes, and text made safe for a terminal. Imports only jobs.store."""
