"""Maps the fixed top-level folders onto subpackages of `avedge` (pyproject holds the rest).

runtime/ -> avedge.runtime, models/ -> avedge.models, ...; every folder below them
that has an __init__.py becomes a subpackage, so adding one needs no edit here.
"""

import os

from setuptools import setup

FOLDERS = {
    "avedge": "avedge",
    "avedge.runtime": "runtime",
    "avedge.models": "models",
    "avedge.quantize": "quantize",
    "avedge.targets": "targets",
    "avedge.cpp_kernels": "cpp_kernels",
}


def discover():
    package_dir, packages = {}, []
    for pkg, folder in FOLDERS.items():
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            if "__init__.py" not in files:
                continue
            rel = os.path.relpath(root, folder)
            name = pkg if rel == "." else pkg + "." + rel.replace(os.sep, ".")
            packages.append(name)
            package_dir[name] = root
    return packages, package_dir


packages, package_dir = discover()
setup(packages=packages, package_dir=package_dir)
