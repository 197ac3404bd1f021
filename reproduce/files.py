"""Files a later step trusts are written to a temporary name and renamed: a kill leaves old or new, never half."""
import hashlib
import json
import os
import socket
import sys
import tempfile
from pathlib import Path


def atomic_write(path, write):
    """Call write(tmp_path), then rename into place. The temporary is named after its writer (host, pid),
    so that one a SIGKILL left behind (`finally` never runs) is removed by the next write of `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for stale in path.parent.glob(f".{path.name}.{host}.*.tmp"):
        pid = stale.name[len(f".{path.name}.{host}."):].split(".")[0]
        if pid.isdigit() and not alive(int(pid)):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{host}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone to read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_json(path, data):
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def load_json(path):
    return json.loads(Path(path).read_text())


def save_torch(path, obj):
    """torch.save, atomically, through a file object: the bytes don't depend on the temporary file's
    name (a path would name the zip's records after it), nor on which equal strings happen to be one
    object (pickle writes a shared one once), so DVC sees the same hash for the same content."""
    import torch  # here: the modules that only read params and CSVs don't need it

    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(_interned(obj), f)
    atomic_write(path, write)


def _interned(obj):
    """`obj` with every string of its dicts, lists and tuples interned (equal strings: one object)."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        new = type(obj)((_interned(k), _interned(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a state dict's module versions, which load_state_dict reads
            new._metadata = obj._metadata
        return new
    if isinstance(obj, (list, tuple)):
        return type(obj)(_interned(v) for v in obj)
    return obj


def file_hash(path, algorithm="sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (an ImageNet model.pt is ~250 MB)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


sha256 = file_hash  # what a run's metrics record of its weights
