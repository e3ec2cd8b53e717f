"""Top-level blocks of an Ultralytics model, and a bounded store for their cached outputs.

A block-sequential algorithm (``quant.gptq``) runs the network one top-level block at a time over
every calibration image. Ultralytics routes each block's input by ``m.f`` (``-1``: the previous
block; an int or a list of ints: earlier outputs, as ``Concat`` reads them), exactly as
``DetectionModel._predict_once`` does and as the sensitivity sweep's ``BlockCache`` replays it. A
block output is kept only while a later block still reads it.

The outputs of hundreds of images at 640 do not all fit in memory for a larger model, so the store
holds up to ``budget_bytes`` in memory and spills the rest to files in a temporary folder (read back
exactly: ``torch.save`` of float32 tensors).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CACHE_BUDGET = 2 << 30  # bytes of block activations held in memory before spilling to disk


@dataclass(frozen=True)
class Block:
    index: int
    module: Any
    source: int | tuple[int, ...]  # Ultralytics' ``m.f``: -1 is the previous block's output


def top_blocks(module: Any) -> tuple[Block, ...]:
    """The blocks in run order: ``module.model`` for an Ultralytics model, else a Sequential's children
    (each reading the previous one), else the module as a single block."""
    import torch.nn as nn

    seq = getattr(module, "model", None)
    if isinstance(seq, nn.Sequential) and all(hasattr(m, "f") for m in seq):
        return tuple(Block(i, m, m.f if isinstance(m.f, int) else tuple(m.f)) for i, m in enumerate(seq))
    if isinstance(module, nn.Sequential):
        return tuple(Block(i, m, -1) for i, m in enumerate(module))
    return (Block(0, module, -1),)


def _reads(block: Block) -> tuple[int, ...]:
    """Absolute indices of the earlier outputs a block reads (-1 before block 0: the images)."""
    sources = (block.source,) if isinstance(block.source, int) else block.source
    return tuple(block.index - 1 if j == -1 else j for j in sources)


def last_readers(blocks: Sequence[Block]) -> dict[int, int]:
    """Output index → the last block that reads it; an output nobody reads is dropped at once."""
    last: dict[int, int] = {}
    for b in blocks:
        for j in _reads(b):
            last[j] = max(last.get(j, -1), b.index)
    return last


class ActivationStore:
    """Per-image tensors of the live block outputs: in memory up to ``budget_bytes``, then on disk."""

    def __init__(self, budget_bytes: int = DEFAULT_CACHE_BUDGET) -> None:
        self.budget = budget_bytes
        self.in_memory = 0
        self.peak_in_memory = 0
        self.spilled_bytes = 0
        self._mem: dict[tuple[int, int], Any] = {}
        self._disk: dict[tuple[int, int], Path] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None

    def put(self, block: int, image: int, tensor: Any) -> None:
        import torch

        size = tensor.numel() * tensor.element_size()
        if self.in_memory + size <= self.budget:
            self._mem[(block, image)] = tensor
            self.in_memory += size
            self.peak_in_memory = max(self.peak_in_memory, self.in_memory)
            return
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="yqt-gptq-cache-")
        path = Path(self._tmp.name) / f"{block}-{image}.pt"
        torch.save(tensor.contiguous(), path)
        self._disk[(block, image)] = path
        self.spilled_bytes += size

    def get(self, block: int, image: int) -> Any:
        if (block, image) in self._mem:
            return self._mem[(block, image)]
        import torch

        return torch.load(self._disk[(block, image)], weights_only=True)

    def drop(self, block: int) -> None:
        for key in [k for k in self._mem if k[0] == block]:
            t = self._mem.pop(key)
            self.in_memory -= t.numel() * t.element_size()
        for key in [k for k in self._disk if k[0] == block]:
            self._disk.pop(key).unlink(missing_ok=True)

    def close(self) -> None:
        self._mem.clear()
        self._disk.clear()
        self.in_memory = 0
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class BlockRunner:
    """Feeds each block its inputs from the store (or the images), and stores its outputs."""

    def __init__(self, blocks: Sequence[Block], images: Sequence[Any], store: ActivationStore) -> None:
        self.blocks = tuple(blocks)
        self.images = images
        self.store = store
        self.last = last_readers(self.blocks)

    def inputs(self, block: Block) -> Iterator[Any]:
        """The block's input for each image, in image order."""
        for n in range(len(self.images)):
            got = [self.images[n] if j < 0 else self.store.get(j, n) for j in _reads(block)]
            yield got[0] if isinstance(block.source, int) else got

    def advance(self, block: Block) -> None:
        """Run ``block`` on every image, keep its output while a later block reads it, and drop the
        outputs no later block reads."""
        keep = self.last.get(block.index, -1) > block.index
        for n, x in enumerate(self.inputs(block)):
            y = block.module(x)
            if keep:
                self.store.put(block.index, n, y)
        for j in [j for j, last in self.last.items() if last == block.index and j >= 0]:
            self.store.drop(j)
