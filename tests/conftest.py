"""Test data made in the exact official formats: CIFAR archives, an ImageNet folder tree."""
import hashlib
import io
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from reproduce.data import cifar

REPO = Path(__file__).resolve().parents[1]
# DVC keeps a folder per repository in its site cache (/var/tmp/dvc): the test projects' go to one
# folder, set before any test module builds its environment and removed when the session ends.
SITE_CACHE = os.environ["DVC_SITE_CACHE_DIR"] = tempfile.mkdtemp(prefix="dvc-site-cache-")


def _committed_params_text() -> str:
    """params.yaml as committed: the study a newcomer runs (`dvc exp run -S profile=smoke`) edits the
    workspace's copy, and no test may depend on that. Outside a git checkout, the file itself."""
    try:
        return subprocess.run(["git", "-C", str(REPO), "show", "HEAD:params.yaml"], capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return (REPO / "params.yaml").read_text()


COMMITTED_PARAMS = _committed_params_text()


def committed_params() -> Path:
    """A file holding the committed params.yaml (written once per session)."""
    path = Path(SITE_CACHE) / "committed-params.yaml"
    if not path.exists():
        path.write_text(COMMITTED_PARAMS)
    return path


def committed_params_dict() -> dict:
    return yaml.safe_load(COMMITTED_PARAMS)


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def pytest_unconfigure(config):
    shutil.rmtree(SITE_CACHE, ignore_errors=True)

N_TRAIN, N_TEST = 50, 20  # per batch file


def _pickle_member(tar, name, obj):
    blob = pickle.dumps(obj, protocol=2)  # py3 bytes keys at protocol 2 read like the py2 originals
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


def _batch(rng, n, label_key, n_classes):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {b"batch_label": b"generated", label_key: rng.integers(0, n_classes, n).tolist(), b"data": data,
            b"filenames": [b"img_%d.png" % i for i in range(n)]}


def make_archive(name, directory):
    """A small archive in the official format; returns (path, md5, the pickled dicts by member name)."""
    src = cifar.source(name)
    n_classes = 10 if name == "cifar10" else 100
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    rng = np.random.default_rng(0 if name == "cifar10" else 1)
    members = {f: _batch(rng, N_TRAIN, label_key, n_classes) for f, _ in src.train_list}
    members.update({f: _batch(rng, N_TEST, label_key, n_classes) for f, _ in src.test_list})
    first = members[src.train_list[0][0]][b"data"][0]
    first[:1024], first[1024:2048], first[2048:] = 10, 20, 30  # image 0: R=10, G=20, B=30 ...
    first[1 * 32 + 2] = 200  # ... except red at row 1, column 2
    members[src.meta["filename"]] = {src.meta["key"].encode(): [b"class%d" % i for i in range(n_classes)]}
    path = directory / src.filename
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(src.base_folder)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for file_name, obj in members.items():
            _pickle_member(tar, f"{src.base_folder}/{file_name}", obj)
    return path, hashlib.md5(path.read_bytes()).hexdigest(), members


def closed_port_url():
    with socket.socket() as s:  # bind, note the port, close: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar.tar.gz"


SIZES = [(300, 200), (200, 350), (500, 375), (64, 80)]


def make_imagenet(root):
    """A tiny ImageNet in ImageFolder layout: two classes of random JPEGs of several sizes."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            (root / split / wnid).mkdir(parents=True)
            for i, (w, h) in enumerate(SIZES):
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / wnid / f"{wnid}_{i}.JPEG")
    return root




def edit_params(path, **changes):
    """Set dotted keys ({"cifar.iterations": 40}) in the params file at `path`."""
    params = yaml.safe_load(Path(path).read_text())
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = value
    Path(path).write_text(yaml.safe_dump(params, sort_keys=False))
    return Path(path)


def write_params(folder, experiments, **changes):
    """A params.yaml in `folder`: the repository's, with a tiny CIFAR protocol, `experiments` and `changes`."""
    (folder / "params.yaml").write_text(COMMITTED_PARAMS)
    tiny = dict(iterations=40, milestones=[20, 30], warmup_iterations=5, batch_size=32, bn_batch=16, log_every=5,
                checkpoint_every=10, eval_every=20, eval_batch_size=100)
    return edit_params(folder / "params.yaml", **{"experiments": experiments,
                                                  **{f"cifar.{k}": v for k, v in tiny.items()}, **changes})


def run_cli(*args, cwd, check=True, **kw):
    """`python -m reproduce ARGS` in `cwd`, as a user would run it."""
    result = subprocess.run([sys.executable, "-m", "reproduce", *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, **kw)
    if check and result.returncode:
        raise AssertionError(f"reproduce {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result
