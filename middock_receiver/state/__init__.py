"""What lasts on disk: apps and their settings, config vars, release records, the deploy lock
and queue."""
