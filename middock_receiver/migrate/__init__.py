"""Moving what runs on one Docker daemon to another: a deploy user's apps from the root daemon to its
own rootless one (`refresh --rootless`)."""
