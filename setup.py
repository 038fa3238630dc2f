"""Build the optional C kernel ``hubwidgets.model._host_reduce``; the rest of the package
metadata is in pyproject.toml.

``optional=True``: where no C compiler is found the install still succeeds and weight
statistics use numpy (slower, same results).
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    COMPILE_ARGS, LINK_ARGS = ["/O2", "/fp:precise"], []
else:  # IEEE arithmetic as written: no fused multiply-add, no fast-math
    COMPILE_ARGS, LINK_ARGS = ["-O3", "-ffp-contract=off", "-pthread"], ["-pthread"]

setup(ext_modules=[Extension(
    "hubwidgets.model._host_reduce", ["hubwidgets/model/_host_reduce.c"], optional=True,
    extra_compile_args=COMPILE_ARGS, extra_link_args=LINK_ARGS)])
