"""Deploy notifications: webhooks that get a signed JSON POST when a deploy or rollback went
live or failed, or a scheduled job failed. `events` builds what is sent (pure), `webhooks` is
the app's record of URLs, secret and last outcomes, `delivery` posts, retries and runs detached
from the deploy, and `announce` is what the worker and the cron runner call."""
