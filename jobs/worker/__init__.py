"""What runs inside a worker process or a Ray actor: the engine loaded once (core) and the batches
it decodes and recognises (batch). Imports jobs.intake (decode), jobs.engines and jobs.store."""
