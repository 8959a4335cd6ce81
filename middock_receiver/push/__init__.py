"""A push's path, top to bottom: `hook` is what git runs (which ref updates deploy, previews),
`follow` queues the request, forks the worker and copies its output to the pusher, and `worker`
is the detached deploy (the lock, the newest request, `pipeline.deploy.Deploy`, the webhooks)."""
