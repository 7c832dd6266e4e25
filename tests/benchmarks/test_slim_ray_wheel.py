"""benchmarks/slim_ray_wheel.py: a wheel without the dropped folders, whose RECORD pip accepts."""
import base64
import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("slim_ray_wheel", ROOT / "benchmarks" / "slim_ray_wheel.py")
slim_ray_wheel = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slim_ray_wheel)

FILES = {"ray/__init__.py": b"VERSION = 'slim test'\n", "ray/jars/ray_dist.jar": b"java" * 1000,
         "ray/rllib/__init__.py": b"", "ray/rllib_contrib.py": b"KEPT = True\n", "ray/core/raylet": b"\x7fELF"}
DIST = "ray-0.0.1.dist-info"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def _wheel(folder: Path) -> Path:
    path = folder / "ray-0.0.1-py3-none-any.whl"
    meta = {f"{DIST}/METADATA": b"Metadata-Version: 2.1\nName: ray\nVersion: 0.0.1\n",
            f"{DIST}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in {**FILES, **meta}.items():
            wheel.writestr(name, data)
        record = "".join(_record_line(n, d) for n, d in {**FILES, **meta}.items()) + f"{DIST}/RECORD,,\n"
        wheel.writestr(f"{DIST}/RECORD", record)
    return path


def test_the_slim_wheel_drops_java_and_rllib_and_keeps_everything_else(tmp_path):
    source = _wheel(tmp_path)
    slim = slim_ray_wheel.slim(source, tmp_path / "slim")
    with zipfile.ZipFile(slim) as wheel:
        names = set(wheel.namelist())
        record = wheel.read(f"{DIST}/RECORD").decode()
        assert wheel.read("ray/core/raylet") == FILES["ray/core/raylet"]
    assert "ray/jars/ray_dist.jar" not in names and "ray/rllib/__init__.py" not in names
    assert {"ray/__init__.py", "ray/rllib_contrib.py", "ray/core/raylet"} <= names   # a prefix, not a substring
    assert "ray/jars/" not in record and "ray/rllib/" not in record and "ray/rllib_contrib.py," in record
    assert slim.name == source.name and slim.stat().st_size < source.stat().st_size


def test_pip_installs_the_slim_wheel(tmp_path):
    slim = slim_ray_wheel.slim(_wheel(tmp_path), tmp_path / "slim")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--target", str(tmp_path / "site"), str(slim)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "ray" / "__init__.py").read_bytes() == FILES["ray/__init__.py"]
    assert not (tmp_path / "site" / "ray" / "jars").exists()


def test_the_output_folder_must_differ_from_the_source(tmp_path):
    source = _wheel(tmp_path)
    with pytest.raises(SystemExit, match="OUT_DIR"):
        slim_ray_wheel.slim(source, tmp_path)
    assert zipfile.ZipFile(source).testzip() is None   # the source is left whole
