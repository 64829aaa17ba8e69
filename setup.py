"""Maps the fixed top-level folders onto the one import package `streamhouse` (docs/DESIGN.md §1).

Subpackages are discovered, so a new subfolder can never be missing from the wheel.
"""

from setuptools import Extension, find_packages, setup

FOLDERS = {
    "streamhouse": "engine",
    "streamhouse.storage": "storage",
    "streamhouse.sql": "sql",
    "streamhouse.proto": "proto",
}


def _packages() -> list[str]:
    names: list[str] = []
    for name, folder in FOLDERS.items():
        names.append(name)
        names.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return names


setup(
    package_dir=FOLDERS,
    packages=_packages(),
    package_data={
        "streamhouse": ["py.typed"],
        "streamhouse.storage.metadata": ["migrations/*.sql"],
        "streamhouse.proto": ["*.proto", "*.pyi"],
    },
    include_package_data=True,
    # The Kafka record codec's per-record loop (engine/kafka/record/_kernel.c): plain C API, no numpy headers.
    ext_modules=[
        Extension("streamhouse.kafka.record._kernel", ["engine/kafka/record/_kernel.c"], extra_compile_args=["-O2"]),
        # The segment footer's shape check before pyarrow parses it (storage/segment/footer.py parse_footer).
        Extension(
            "streamhouse.storage.segment._footer_check",
            ["storage/segment/_footer_check.c"],
            extra_compile_args=["-O2"],
        ),
    ],
)
