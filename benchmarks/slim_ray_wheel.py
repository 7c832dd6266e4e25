"""Make a Ray wheel small enough to travel to the GPU machine with the working tree (64 MiB a call, issue 12).

    python benchmarks/slim_ray_wheel.py SOURCE.whl OUT_DIR

The ray 2.60.0 cp312 manylinux wheel is 79 MB; 32 MB of it is `ray/jars/` (Java workers) and 1.7 MB `ray/rllib/`,
neither of which a Python sweep imports. This writes OUT_DIR/<same name>.whl without them, with RECORD rewritten so
that pip installs it as usual, and prints the sizes. Everything else (the raylet, the GCS server, `_raylet.so`, the
runtime-env agent) stays. `benchmarks/gpu_wheels.sh` downloads the wheels and calls this.
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

UNUSED_BY_A_PYTHON_SWEEP = ("ray/jars/", "ray/rllib/")


def kept(name: str, dropped: tuple[str, ...] = UNUSED_BY_A_PYTHON_SWEEP) -> bool:
    return not name.startswith(dropped)


def record_without(record: str, dropped: tuple[str, ...] = UNUSED_BY_A_PYTHON_SWEEP) -> str:
    """RECORD's lines ("path,hash,size") for the files that stay."""
    return "".join(line for line in record.splitlines(keepends=True) if kept(line.split(",", 1)[0], dropped))


def slim(source: Path, out_dir: Path, dropped: tuple[str, ...] = UNUSED_BY_A_PYTHON_SWEEP) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / source.name
    if target.resolve() == source.resolve():
        raise SystemExit("OUT_DIR must differ from the source wheel's folder")
    with zipfile.ZipFile(source) as wheel, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in wheel.infolist():
            if not kept(info.filename, dropped):
                continue
            data = wheel.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = record_without(data.decode(), dropped).encode()
            out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    target = slim(args.source, args.out_dir)
    mb = 1 << 20
    print(f"{args.source.name}: {args.source.stat().st_size / mb:.1f} MiB -> {target.stat().st_size / mb:.1f} MiB "
          f"(without {', '.join(UNUSED_BY_A_PYTHON_SWEEP)}) in {target.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
