"""RQ jobs: backups, restores and maintenance. Jobs take row ids; state lives in the database.

The portal enqueues by dotted path (``jobs.restore.run_restore``) and never imports this package.
"""
