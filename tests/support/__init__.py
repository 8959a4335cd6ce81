"""What the tests (and bench/) share: middock run as a user would, its apps, waiting, ports, the test images,
the beds (a systemd server, a Swarm, private dockerds), the load clients. Helpers only: fixtures live in
tests/conftest.py."""
