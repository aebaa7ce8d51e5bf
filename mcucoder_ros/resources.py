"""Where the package's data lives: the shipped model, config, link traces, sample data,
message definitions and firmware images, whether the package was built by colcon, set
up by `make setup` or run from its source checkout.

Looked for in this order:
1. an explicit override where one exists ($MCUCODER_MODEL_DIR, $MCUCODER_FIRMWARE_DIR):
   when it is set, it is the only place looked in (a setting that points nowhere is an
   error, not silently ignored);
2. the source checkout, when this module was imported from one (its data belongs with
   its code);
3. the package's share directory from the ament index: a colcon or ROS install
   (`install/mcucoder_ros/share/mcucoder_ros`);
4. `<sys.prefix>/share/mcucoder_ros`: make setup's .venv.
A miss raises ResourceNotFound, one line naming every place looked in.

Pure: importing it imports nothing of ROS (ament_index_python is tried when asked).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "mcucoder_ros"
_HERE = Path(__file__).resolve().parents[1]
CHECKOUT = _HERE if (_HERE / "package.xml").exists() else None


class ResourceNotFound(FileNotFoundError):
    """Package data not found anywhere it is looked for; the message names every place."""


def ament_share() -> Path | None:
    """The package's share directory in the ament index, or None (no ROS environment,
    or the package is not in AMENT_PREFIX_PATH)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError, ValueError):
        # LookupError: PackageNotFoundError; OSError: AMENT_PREFIX_PATH not set
        return None


def package_prefix() -> Path:
    """The install prefix of the package in the ament index (executables are in
    <prefix>/lib/mcucoder_ros); raises ResourceNotFound outside a ROS environment."""
    share = ament_share()
    if share is None:
        raise ResourceNotFound(f"{PACKAGE} is not in the ament index (source install/setup.bash of its workspace)")
    return share.parents[1]


def roots() -> list[tuple[str, Path]]:
    """(label, folder) of every place package data may be, in search order."""
    out = []
    if CHECKOUT is not None:
        out.append(("source checkout", CHECKOUT))
    share = ament_share()
    if share is not None:
        out.append(("ament index", share))
    out.append(("Python environment", Path(sys.prefix) / "share" / PACKAGE))
    seen, unique = set(), []
    for label, d in out:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            unique.append((label, d))
    return unique


def _present(path: Path, marker: str | None) -> bool:
    return (path / marker).is_file() if marker else path.exists()


def find(relpath: str, what: str, *, env: str | None = None, marker: str | None = None,
         checkout_relpath: str | None = None) -> Path:
    """The first `<root>/<relpath>` that exists (and holds `marker`, for a folder).
    `checkout_relpath` replaces relpath in the source checkout where the layouts differ."""
    if env and os.environ.get(env):
        p = Path(os.environ[env])
        if _present(p, marker):
            return p
        raise ResourceNotFound(f"{what} not found: ${env}={p}" + (f" has no {marker}" if marker else
                                                                    " does not exist"))
    looked = []
    for label, root in roots():
        p = root / (checkout_relpath if label == "source checkout" and checkout_relpath else relpath)
        if _present(p, marker):
            return p
        looked.append(f"{p / marker if marker else p} ({label})")
    hint = f"; set ${env} to use another" if env else ""
    raise ResourceNotFound(f"{what} not found; looked in: {', '.join(looked)}{hint}")


def config_file(name: str = "pipeline.yaml") -> Path:
    return find(f"config/{name}", f"config/{name}")


def trace_file(name: str) -> Path:
    """A bundled link trace by name (config/traces/<name>)."""
    return find(f"config/traces/{name}", f"link trace {name}")


def data_path(relpath: str) -> Path:
    """Bundled sample data: data/samples, data/clips/traffic.mp4, ..."""
    return find(f"data/{relpath}", f"sample data data/{relpath}")
