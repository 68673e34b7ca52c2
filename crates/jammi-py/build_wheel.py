"""Package a `jammi` wheel from a native module cargo has already built.

Usage: build_wheel.py LIB OUT_DIR

LIB is the cdylib of crates/jammi-py (target/<profile>/lib_jammi.so). scripts/test.sh
builds it with the rest of the workspace — one set of compiled dependencies for the tests
and the wheel — and installs the wheel this writes into a virtual environment. Users build
with maturin instead (`pip install ./crates/jammi-py`, docs/python.md); both wheels hold
the same files.
"""

import base64
import hashlib
import os
import sys
import sysconfig
import tomllib
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def version() -> str:
    with open(os.path.join(HERE, "..", "..", "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main() -> None:
    lib, out = sys.argv[1], sys.argv[2]
    v = version()
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    tag = f"cp39-abi3-{platform}"
    dist = f"jammi_db-{v}.dist-info"
    files = {}
    package = os.path.join(HERE, "python", "jammi")
    for name in sorted(os.listdir(package)):
        path = os.path.join(package, name)
        if os.path.isfile(path) and not name.endswith(".pyc"):
            with open(path, "rb") as f:
                files[f"jammi/{name}"] = f.read()
    with open(lib, "rb") as f:
        files["jammi/_jammi.abi3.so"] = f.read()
    with open(os.path.join(HERE, "README.md"), "rb") as f:
        readme = f.read().decode()
    files[f"{dist}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: jammi-db\nVersion: {v}\nSummary: An embeddable database for AI data pipelines, answering in Arrow\n"
        f"License: Apache-2.0\nRequires-Python: >=3.9\nRequires-Dist: pyarrow>=14\nDescription-Content-Type: text/markdown\n\n{readme}"
    ).encode()
    files[f"{dist}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: jammi build_wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
    record = "\n".join(record_line(n, d) for n, d in files.items()) + f"\n{dist}/RECORD,,\n"
    os.makedirs(out, exist_ok=True)
    wheel = os.path.join(out, f"jammi_db-{v}-{tag}.whl")
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            # The native module is large in a debug build: stored, not compressed.
            z.writestr(name, data, zipfile.ZIP_STORED if name.endswith(".so") else zipfile.ZIP_DEFLATED)
        z.writestr(f"{dist}/RECORD", record)
    print(wheel)


if __name__ == "__main__":
    main()
