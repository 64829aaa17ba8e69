#!/usr/bin/env python3
"""Regenerate the committed gRPC code in proto/ from proto/streamhouse.proto.

    python tools/gen_proto.py           # rewrite proto/streamhouse_pb2.py, .pyi, _pb2_grpc.py
    python tools/gen_proto.py --check   # exit 1 if the committed files are stale

grpc_tools writes `import streamhouse_pb2` (a top-level import) unless the .proto sits at the
path matching its Python package, so the .proto is copied into a temporary tree at
`streamhouse/proto/streamhouse.proto` first; the generated grpc module then does
`from streamhouse.proto import streamhouse_pb2`.

The output embeds the generator's versions, so it is only reproducible with the pinned
grpcio-tools (pyproject.toml, `test` extra); the script refuses to run with any other version.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
SOURCE = PROTO_DIR / "streamhouse.proto"
PACKAGE_PATH = Path("streamhouse/proto")  # where the .proto must sit for package-qualified imports
GENERATED = ("streamhouse_pb2.py", "streamhouse_pb2.pyi", "streamhouse_pb2_grpc.py")
REGENERATE = "python tools/gen_proto.py"


def pinned_grpcio_tools() -> str | None:
    """The exact grpcio-tools version pinned in pyproject.toml, if any."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    for req in requirements:
        match = re.fullmatch(r"\s*grpcio-tools\s*==\s*([^\s;,]+)\s*(;.*)?", req)
        if match:
            return match.group(1)
    return None


def check_generator_version() -> str | None:
    """An error message if the installed grpcio-tools is not the pinned one."""
    try:
        installed = importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return "grpcio-tools is not installed: pip install -e '.[test]'"
    pinned = pinned_grpcio_tools()
    if pinned is None:
        return "pyproject.toml does not pin grpcio-tools==<version>; the output would not be reproducible"
    if installed != pinned:
        return (
            f"grpcio-tools {installed} is installed but pyproject.toml pins {pinned}; "
            f"generated code would differ. Run: pip install 'grpcio-tools=={pinned}'"
        )
    return None


def generate(out_dir: Path) -> dict[str, bytes]:
    """Run protoc on a copy of the .proto; return {file name: contents} of the generated files."""
    with tempfile.TemporaryDirectory(prefix="gen_proto_") as tmp:
        src_root = Path(tmp) / "src"
        (src_root / PACKAGE_PATH).mkdir(parents=True)
        shutil.copyfile(SOURCE, src_root / PACKAGE_PATH / SOURCE.name)
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{src_root}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(PACKAGE_PATH / SOURCE.name),
        ]
        result = subprocess.run(cmd, cwd=src_root, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"protoc failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    produced = out_dir / PACKAGE_PATH
    files = {name: (produced / name).read_bytes() for name in GENERATED}
    grpc_module = files["streamhouse_pb2_grpc.py"].decode()
    if "from streamhouse.proto import streamhouse_pb2" not in grpc_module:
        sys.exit("generated grpc module does not import streamhouse.proto.streamhouse_pb2; check PACKAGE_PATH")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed generated files are stale")
    args = parser.parse_args(argv)

    problem = check_generator_version()
    if problem:
        print(f"gen_proto: {problem}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="gen_proto_out_") as tmp:
        files = generate(Path(tmp))

    if args.check:
        stale = []
        for name, data in files.items():
            committed = PROTO_DIR / name
            if not committed.exists():
                stale.append(f"  proto/{name}: missing")
            elif committed.read_bytes() != data:
                stale.append(f"  proto/{name}: differs from what proto/streamhouse.proto generates")
        if stale:
            print(
                "gen_proto: generated gRPC code is stale:\n" + "\n".join(stale) + f"\nRegenerate with: {REGENERATE}",
                file=sys.stderr,
            )
            return 1
        print("gen_proto: generated gRPC code is up to date")
        return 0

    for name, data in files.items():
        target = PROTO_DIR / name
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
            print(f"gen_proto: wrote proto/{name}")
        else:
            print(f"gen_proto: proto/{name} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
