from setuptools import find_packages, setup

setup(
    name="middock",
    version="0.1.0",
    description="git push to deploy a docker compose stack on your own server",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["middock_receiver", "middock_receiver.*"]),
    python_requires=">=3.10",
    install_requires=["dulwich>=0.21", "docker>=6.1", "python-dotenv>=1.0"],
    extras_require={"test": ["pytest>=7", "ruff"]},
    data_files=[("share/middock/hooks", ["hooks/post-receive", "hooks/pre-receive"])],
    entry_points={"console_scripts": ["middock=middock_receiver.cli:main"]},
)
