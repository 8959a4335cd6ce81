"""The worker process: the background work of the app (here a heartbeat every WORKER_INTERVAL
seconds, 30 by default), one line of log each time. `middock logs APP --service worker` shows it.
"""

import os
import signal
import socket
import sys
import time


def main() -> None:
    interval = float(os.environ.get("WORKER_INTERVAL", "30"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"worker started on {socket.gethostname()}, a heartbeat every {interval:g}s", flush=True)
    beats = 0
    while True:
        time.sleep(interval)
        beats += 1
        print(f"worker heartbeat {beats}", flush=True)


if __name__ == "__main__":
    main()
