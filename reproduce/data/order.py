"""Which samples make batch `it`: a pure function of (seed, it), so a run resumes from an iteration number.

Each epoch is a permutation drawn from (seed, epoch); two orders, one per recipe (`batches`):
- "continuous": the permutations end to end, batch `it` is positions [it*B, (it+1)*B): batches
  straddle epochs and nothing is dropped, as Caffe's data layer reads (the paper's runs);
- "per_epoch": ceil(N/B) batches per epoch, the last one smaller (fb.resnet.torch dataloader.lua).
When several processes train, process `rank` takes its consecutive share of the global batch, as
DataParallelTable splits a batch over GPUs (models/batchnorm.py: BN groups are consecutive slices too,
so one process or several normalise the same groups).
"""
import hashlib

import torch


def seed_for(*parts) -> int:
    """A 63-bit seed from a tuple such as ("order", seed, epoch): distinct tuples get unrelated streams."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class Order:
    def __init__(self, n: int, batch_size: int, seed: int, batches: str = "continuous"):
        if batches not in ("continuous", "per_epoch"):
            raise ValueError(f"batches '{batches}': expected continuous or per_epoch")
        self.n, self.batch_size, self.seed, self.batches = n, batch_size, seed, batches
        # Batches an epoch has: a fraction when they straddle epochs (the schedule rounds up).
        self.per_epoch = -(-n // batch_size) if batches == "per_epoch" else n / batch_size
        self._perms = {}  # the epochs' permutations the last batch used

    def permutation(self, epoch):
        """Sample order of one epoch (on the CPU, so it is the same on every device)."""
        generator = torch.Generator().manual_seed(seed_for("order", self.seed, epoch))
        return torch.randperm(self.n, generator=generator)

    def positions(self, it) -> tuple[int, int]:
        """[start, stop) of batch `it` in the epochs' permutations laid end to end."""
        if self.batches == "per_epoch":
            epoch, j = divmod(it, self.per_epoch)
            start = epoch * self.n + j * self.batch_size
            return start, min(start + self.batch_size, (epoch + 1) * self.n)
        return it * self.batch_size, (it + 1) * self.batch_size

    def size(self, it) -> int:
        """How many samples batch `it` has: B, except an epoch's last under per_epoch."""
        start, stop = self.positions(it)
        return stop - start

    def indices(self, it, rank=0, world=1) -> tuple[torch.Tensor, torch.Tensor]:
        """(sample indices, their epochs) of batch `it`, or of process `rank`'s consecutive share of it."""
        start, stop = self.positions(it)
        epochs = range(start // self.n, (stop - 1) // self.n + 1)
        self._perms = {e: self._perms[e] if e in self._perms else self.permutation(e) for e in epochs}
        offset = epochs[0] * self.n
        idx = torch.cat([self._perms[e] for e in epochs])[start - offset:stop - offset]
        epoch = torch.arange(start, stop) // self.n
        mine = share(len(idx), rank, world)
        return idx[mine], epoch[mine]


def share(n: int, rank: int, world: int) -> slice:
    """Process `rank`'s consecutive part of n samples (sizes differ by one at most)."""
    return slice(rank * n // world, (rank + 1) * n // world)
