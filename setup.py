# cffi has no pyproject.toml key for its builder: this file only names it.
from setuptools import setup

setup(cffi_modules=["csrc/build_native.py:ffibuilder"])
