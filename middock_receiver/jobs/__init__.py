"""Scheduled jobs (middock.cron): the schedule, the jobs of a release, the crontab, the runs."""
