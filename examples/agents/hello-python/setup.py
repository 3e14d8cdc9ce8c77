#!/usr/bin/env python3
"""Package metadata, as `pixell build` generates it."""

from setuptools import setup

setup(
    name="hello-python",
    version="1.0.0",
    description="Greets whoever it is given, through a private formatting sub-agent.",
    packages=["src"],
    package_dir={"": "."},
    install_requires=[],
    python_requires=">=3.9",
    include_package_data=True,
)
