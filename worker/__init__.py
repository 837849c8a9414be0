"""vidx's adapters over the pipeline: the Celery app and tasks, the ``vidx`` CLI, the HTTP API, health, logging."""
