"""The live release, operated outside a deploy: its containers and logs (`running`), a one-off
container (`oneoff`, `run`) and one run of a scheduled job (`job_run`, `cron:run`). Each uses
the pipeline's records of the live release, so it stands above `pipeline/`."""
