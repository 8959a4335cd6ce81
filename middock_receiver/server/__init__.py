"""The server: its deploy account (root's management of it, its SSH keys, the SSH dispatcher that
every key's forced command runs), the programs middock keeps running on it (`daemons`: systemd
units or background processes) and what it keeps for the whole machine (`machine`: /run/middock)."""
