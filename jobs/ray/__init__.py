"""The Ray executor: actors that run a worker's core on other nodes (actor), the handles the runner
drives like local workers (executor), the cluster view (cluster) and the wakeup. Imports jobs.worker,
jobs.intake, jobs.engines, jobs.ops and jobs.store; never the runner."""
