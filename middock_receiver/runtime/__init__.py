"""Where a release's containers run: the plan (argument lists, plain data) and Compose."""
