"""The order in which dptrain reads the windows of a token corpus, for PyTorch code that must read the same.

    from dptrain_order import epoch_order, rank_windows
    order = epoch_order(windows, seed=0, epoch=0)            # all windows of epoch 0, in order
    mine = rank_windows(windows, seed=0, epoch=0, rank=1, world=2)

dptrain shuffles a token corpus with a keyed permutation computed per position
(core/include/dptrain/core/data/keyed_permutation.h: a 6-round Feistel network over the smallest
even power of two >= n with SplitMix64 round functions, cycle-walked into [0, n)) instead of
torch.randperm, so a rank's memory does not grow with the corpus. This is the same computation in
numpy, vectorized over positions; window w holds tokens [w * context, w * context + context + 1)
of train.bin. Rank r of W takes positions r, r + W, ... of the order (DistributedSampler's
contract), the last incomplete global batch dropped. Other data (IDX, tensor files, image
folders) is shuffled with torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)),
as PyTorch's DistributedSampler does.
"""
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ROUNDS = 6


def _mix64(z):
    """SplitMix64's finalizer on uint64 arrays (numpy's uint64 arithmetic wraps, as C++'s does)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _round_keys(seed, epoch):
    """SampleRng(seed, epoch, index -1).next_u64() x 6 (core/src/data/sample_rng.cpp)."""
    with np.errstate(over="ignore"):
        h = _mix64(np.uint64(seed % 2**64) + _GOLDEN)
        h = _mix64(h ^ np.uint64(epoch % 2**64))
        state = _mix64(h ^ (np.uint64(2**64 - 1) * _GOLDEN))  # index -1 as uint64
        keys = []
        for _ in range(_ROUNDS):
            state = state + _GOLDEN
            keys.append(_mix64(state))
    return keys


def _permute(n, seed, epoch, positions):
    if n < 1:
        raise ValueError(f"dptrain_order: the corpus has {n} windows; it needs at least 1")
    bits = 2
    while bits < 63 and (1 << bits) < n:
        bits += 1
    half = np.uint64((bits + 1) // 2)
    mask = np.uint64((1 << int(half)) - 1)
    keys = _round_keys(seed, epoch)

    def encrypt(block):
        left, right = block >> half, block & mask
        for key in keys:
            left, right = right, left ^ (_mix64(right ^ key) & mask)
        return (left << half) | right

    index = encrypt(np.asarray(positions, dtype=np.uint64))
    outside = index >= np.uint64(n)
    while outside.any():  # cycle walking back into [0, n)
        index[outside] = encrypt(index[outside])
        outside = index >= np.uint64(n)
    return index.astype(np.int64)


def epoch_order(n, seed=0, epoch=0):
    """The window indices of `epoch` in the order dptrain reads them (dptrain train --seed)."""
    return _permute(n, seed, epoch, np.arange(n, dtype=np.uint64))


def rank_windows(n, seed, epoch, rank, world, batch=1):
    """Rank `rank`'s windows of `epoch`, in its order: positions rank, rank + world, ... of
    epoch_order, cut to whole global batches of world x batch (as dptrain's epochs are)."""
    used = n // (world * batch) * world * batch
    return _permute(n, seed, epoch, np.arange(rank, used, world, dtype=np.uint64))
