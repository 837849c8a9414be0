"""vidx workers: the Celery app, its tasks, the ``vidx`` CLI and worker logging."""
