"""The offline photo catalogue used for training and held-out evaluation.

Sources (all obtainable offline, see docs/model-card in models/):
  * PyPI `mvtb-data` (MIT): colour photos under mvtbdata/images
  * Debian `mate-backgrounds`, `lomiri-wallpapers-*`, `plasma-workspace-wallpapers`
    (extracted with `make training-data` into data/debian/)
  * PyPI `scikit-image` (CC0 / public domain): evaluation only

The held-out split is a fixed list of names, never trained on.  Stereo pairs and
neighbouring frames of one sequence are held out together so nothing leaks.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

MVTB_PHOTOS = [
    "58060.png", "butterfly.jpg", "building2-3.png", "church.png", "eiffel-1.png", "eiffel-2.png",
    *[f"flowers{i}.png" for i in range(1, 10)], "image3.jpg", "lab-scene.png", "notre-dame.png",
    "parks.png", "road.png", "rocks2-l.png", "rocks2-r.png", "roof.png", "tomato_124.png",
    "tomato_14.png", "tomato_35.png", "tomato_54.png", "walls-l.png", "walls-r.png",
]
PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                 "Grey", "Kite", "MilkyWay", "OneStandsOut", "Path", "Volna", "summer_1am"]
LOMIRI_SKIP = {"umang_by_Abhishek_Mudgal.jpg"}   # abstract art, not a photo
SKIMAGE_PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
                  "hubble_deep_field.jpg"]

# Never trained on.
HELD_OUT = {
    "church.png", "eiffel-1.png", "eiffel-2.png", "flowers4.png", "flowers8.png", "notre-dame.png",
    "road.png", "walls-l.png", "walls-r.png", "tomato_54.png", "butterfly.jpg",
    "P1070512.png", "P1070514.png", "P1070515.png",          # the last campus frames
    "Dune.jpg", "LadyBird.jpg", "Kleiber_by_Lukas_Baubkus.jpg", "Bridge_by_Sander_Klootwijk.jpg",
    "EveningGlow", "Path",
}


def _plasma_largest(folder: str) -> str | None:
    files = glob.glob(os.path.join(folder, "contents", "images", "*"))
    sized = [(int(Path(f).stem.split("x")[0]), f) for f in files if "x" in Path(f).stem]
    return max(sized)[1] if sized else None


def catalogue(debian_root: str | os.PathLike | None = "data/debian") -> list[tuple[str, str]]:
    """All colour photos found, as (key, path); key is the name used by HELD_OUT."""
    from importlib.resources import files

    found: list[tuple[str, str]] = []
    try:
        mv = Path(str(files("mvtbdata") / "images"))
        found += [(n, str(mv / n)) for n in MVTB_PHOTOS if (mv / n).exists()]
        found += [(p.name, str(p)) for p in sorted((mv / "campus").glob("*.png"))]
        found += [(p.name, str(p)) for p in sorted((mv / "mosaic").glob("*.png"))]
    except ModuleNotFoundError:
        pass
    if debian_root and Path(debian_root).is_dir():
        root = Path(debian_root)
        found += [(p.name, str(p)) for p in sorted((root / "usr/share/backgrounds/mate/nature").glob("*.jpg"))]
        found += [(p.name, str(p)) for p in sorted((root / "usr/share/backgrounds").glob("*.jpg"))
                  if p.name not in LOMIRI_SKIP]
        for name in PLASMA_PHOTOS:
            f = _plasma_largest(str(root / "usr/share/wallpapers" / name))
            if f:
                found.append((name, f))
    return found


def heldout_sources(debian_root="data/debian") -> dict[str, str]:
    """The held-out photos found here: catalogue key -> path (scikit-image's included)."""
    cat = {k: p for k, p in catalogue(debian_root) if k in HELD_OUT}
    try:
        from importlib.resources import files
        sk = Path(str(files("skimage") / "data"))
        cat.update({n: str(sk / n) for n in SKIMAGE_PHOTOS if (sk / n).exists()})
    except ModuleNotFoundError:
        pass
    return cat


def write_heldout(out_dir: str, debian_root="data/debian", native: bool = False) -> list[str]:
    """The held-out photos as PNGs named by catalogue key: at 224x224 (cv2.INTER_AREA,
    the paper's protocol), or with `native` at their own size, untouched."""
    import cv2

    from ..codec.images import load_rgb, resize_224
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for key, path in sorted(heldout_sources(debian_root).items()):
        out = os.path.join(out_dir, Path(key).stem + ".png")
        rgb = load_rgb(path)
        cv2.imwrite(out, (rgb if native else resize_224(rgb))[..., ::-1])
        written.append(out)
    return written


def split(debian_root="data/debian") -> tuple[list[str], list[str]]:
    """(train paths, held-out paths).  skimage photos are added to the held-out set."""
    cat = catalogue(debian_root)
    train = [p for k, p in cat if k not in HELD_OUT]
    held = [p for k, p in cat if k in HELD_OUT]
    try:
        from importlib.resources import files
        sk = Path(str(files("skimage") / "data"))
        held += [str(sk / n) for n in SKIMAGE_PHOTOS if (sk / n).exists()]
    except ModuleNotFoundError:
        pass
    return train, held
