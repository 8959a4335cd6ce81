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
    python_requires=">=3.10",
    install_requires=["dulwich>=0.21", "docker>=6.1", "python-dotenv>=1.0"],
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3", "ruff"]},
    data_files=[("share/middock/hooks", ["hooks/post-receive", "hooks/pre-receive"])],
    entry_points={"console_scripts": ["middock=middock_receiver.cli:main"]},
)
