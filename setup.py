import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# middock's one version, read as text: importing the package would need its dependencies first.
VERSION = re.search(r'^__version__ = "(.+)"$', (HERE / "middock_receiver" / "__init__.py").read_text(), re.M)[1]

setup(
    name="middock",
    version=VERSION,
    description="git push to deploy a docker compose stack on your own server",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["middock_receiver", "middock_receiver.*"]),
    package_data={"middock_receiver.dashboard": ["templates/*.html", "static/*.css", "static/*.js"]},
    python_requires=">=3.10",
    install_requires=[
        *("dulwich>=0.21", "docker>=6.1", "python-dotenv>=1.0"),
        # the dashboard's web stack, pinned (Debian 12's own are too old)
        *("starlette==1.10.0", "uvicorn==0.55.0", "jinja2==3.1.6", "sse-starlette==3.7.1"),
    ],
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3", "ruff", "playwright==1.65.3"]},
    data_files=[("share/middock/hooks", ["hooks/post-receive", "hooks/pre-receive"])],
    entry_points={"console_scripts": ["middock=middock_receiver.cli:main"]},
)
