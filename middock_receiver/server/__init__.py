"""The server's deploy account: root's management of it, its SSH keys, and the SSH dispatcher
that every key's forced command runs."""
