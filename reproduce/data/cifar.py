"""CIFAR-10/100: download the official archive, check its md5, convert it once into one small torch file.

The archive is the python-pickle version from the dataset's home page (torchvision's URL and md5). We
read it ourselves, straight from the tar: torchvision's reader checks each member's md5 too, so it
cannot read the small archives the tests generate in the same format.
"""
import hashlib
import http.client
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError, did_you_mean
from ..files import file_hash, save_torch

NAMES = ("cifar10", "cifar100")
LABEL_KEYS = {"cifar10": "labels", "cifar100": "fine_labels"}  # CIFAR-100: the 100 fine classes

# Per channel, 0-255 scale: fb.resnet.torch datasets/cifar10.lua and datasets/cifar100.lua.
MEAN_STD = {
    "cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    "cifar100": ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
}


def source(name):
    """torchvision's dataset class for `name`: it holds the URL, file names and md5 sums."""
    if name not in NAMES:
        raise UserError(f"unknown dataset '{name}'{did_you_mean(name, NAMES)}; allowed: {', '.join(NAMES)}")
    from torchvision import datasets  # imported here: a training process needs only `load`

    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]


def md5sum(path) -> str:
    return file_hash(path, "md5")  # the official archives' checksums are md5s


def fetch_archive(name, raw_dir, md5=None, url=None) -> Path:
    """The verified archive at raw_dir/<official file name>, downloaded only when it is not there yet."""
    src = source(name)
    md5, url = md5 or src.tgz_md5, url or src.url
    archive = (Path(raw_dir) / src.filename).resolve()
    by_hand = (f"download {src.url} yourself and put it at {archive} (md5 {md5}; the folder is data.raw in "
               f"params.yaml), or run the smoke profile, which needs no download (profile: smoke)")
    if archive.exists():
        found = md5sum(archive)
        if found != md5:  # never the user's file to delete, never to trust either
            raise UserError(f"{archive} has md5 {found}, expected {md5}: it is not the {name} archive or it is "
                            f"corrupt; delete it to download again, or {by_hand}")
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            found = _download(url, out)
        if found != md5:
            raise UserError(f"the file downloaded from {url} has md5 {found}, expected {md5}; {by_hand}")
        os.replace(tmp, archive)
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError, HTTPError, timeouts are OSErrors
        raise UserError(f"could not download {url} ({getattr(e, 'reason', e)}); {by_hand}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)  # a partial file is never left behind
    return archive


def _download(url, out) -> str:
    """Copy `url` into the open file `out` with a progress bar; returns the md5 of what was written."""
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, disable=None) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def convert(name, archive, out_path) -> Path:
    """Read the pickled batches straight from the tar and save one dict of uint8 tensors (atomically)."""
    src, archive, out_path = source(name), Path(archive), Path(out_path)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            def member(file_name):
                with tar.extractfile(f"{src.base_folder}/{file_name}") as f:
                    return {k.decode() if isinstance(k, bytes) else k: v
                            for k, v in pickle.load(f, encoding="latin1").items()}

            names = member(src.meta["filename"])[src.meta["key"]]
            classes = [c.decode() if isinstance(c, bytes) else c for c in names]
            train = [member(f) for f, _ in src.train_list]
            test = [member(f) for f, _ in src.test_list]
            train_x, train_y = _stack(train, LABEL_KEYS[name], len(classes))
            test_x, test_y = _stack(test, LABEL_KEYS[name], len(classes))
    except (tarfile.TarError, pickle.UnpicklingError, EOFError, zlib.error, OSError, KeyError, ValueError,
            TypeError, AttributeError) as e:
        raise UserError(f"{archive} is not a readable {name} archive ({type(e).__name__}: {e}); delete it and run "
                        f"`python -m reproduce download --dataset {name}` again") from None
    data = dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=classes, name=name,
                source_md5=md5sum(archive))
    save_torch(out_path, data)
    return out_path


def _stack(batches, label_key, n_classes):
    """Images as uint8 [N, 3, 32, 32] (rows of 3072 bytes are channel-major RGB) and int64 labels."""
    x = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
    y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    if len(x) != len(y) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"{len(x)} images, {len(y)} labels in [{y.min()}, {y.max()}] for {n_classes} classes")
    return torch.from_numpy(x), torch.from_numpy(y)


def _stored_md5(path):
    """source_md5 of a converted file, None when it is missing or unreadable (then it is converted again)."""
    try:
        return torch.load(path, weights_only=True, mmap=True)["source_md5"]
    except Exception:  # any damage means the same thing here: convert again
        return None


def prepare(name, raw_dir, out_path, md5=None, url=None) -> Path:
    """Fetch and convert; the conversion is skipped when out_path already came from this very archive."""
    md5 = md5 or source(name).tgz_md5
    archive = fetch_archive(name, raw_dir, md5, url)
    if Path(out_path).exists() and _stored_md5(out_path) == md5:
        return Path(out_path)
    return convert(name, archive, out_path)


def load(path) -> dict:
    """The converted dataset: train_x/test_x uint8 [N, 3, 32, 32], train_y/test_y int64, classes, name."""
    path = Path(path)
    if not path.exists():
        name = path.stem if path.stem in NAMES else "NAME"
        raise UserError(f"{path} does not exist; run the download stage first: "
                        f"`python -m reproduce download --dataset {name}`")
    try:
        return torch.load(path, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as e:
        raise UserError(f"{path} is not a converted CIFAR file ({e}); delete it and run the download stage again")
