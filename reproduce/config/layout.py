"""Where ImageNet must be: checked by `validate` before anything trains (no torch needed) and by the
ImageNet loader, with the same one-line error."""
from pathlib import Path

from ..errors import UserError

LAYOUT = "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG"


def check_imagenet_root(root) -> Path:
    """The root, if it holds train/ and val/; else a UserError naming it, the key and the expected layout."""
    root = Path(root)
    if not root.is_dir():
        problem = "does not exist"
    elif not all((root / split).is_dir() for split in ("train", "val")):
        problem = "has no train/ and val/ folders"
    else:
        return root
    raise UserError(layout_error(root, problem))


def layout_error(root, problem):
    return (f"data.imagenet.root: {Path(root).resolve()} {problem}; expected {LAYOUT}. ImageNet cannot be "
            f"downloaded automatically (its licence): get ILSVRC2012 from image-net.org and sort val/ into "
            f"class folders, or set data.imagenet.root: null to leave Table 5 not run")
