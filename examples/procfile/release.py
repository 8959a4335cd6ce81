"""The release phase (the Procfile's `release:`): runs once per deploy, in a one-off container
of the new image, before the new release serves. Database migrations go here: a non-zero exit
fails the deploy, and the live release keeps serving.
"""

import os

print(f"release: nothing to migrate; the web process will listen on port {os.environ.get('PORT', '5000')}")
