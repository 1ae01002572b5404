"""The wheel's tag: py3-none-<platform>. kernels.c is loaded with ctypes and never sees Python's C API, so one
build serves every Python 3 on its platform (pyproject.toml holds everything else)."""

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel


class PlainLibraryWheel(bdist_wheel):
    def get_tag(self):
        return "py3", "none", super().get_tag()[2]


setup(cmdclass={"bdist_wheel": PlainLibraryWheel})
