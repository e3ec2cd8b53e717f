"""Frozen-scale GPTQ over the swapped model, block by block, with progress.

GPTQ updates each layer's weights to absorb the rounding error of the ones before it, from the
Hessian of that layer's inputs. The per-channel scale must be frozen first (see
``modes.weight_quantizer``). Only layers below 8 bits are solved: the 8-bit ones run float while
GPTQ runs (as Brevitas' ``gptq_mode`` skips a disabled quantizer) and keep round-to-nearest. At
``--target-bits 4.5`` (34 of 82 layers at 8 bits, 128 images) that scored 0.3877 mAP50-95 on 81
held-out train2017 images, against 0.3881 with all 82 solved.

Block-sequential (:func:`apply_gptq`): the calibration images go through the network one top-level
Ultralytics block at a time (``quant.blocks``: ``m.f`` routing, Concat of earlier outputs, outputs
kept only while a later block reads them, a bounded in-memory cache spilling to disk). Within a
block, the layers are solved in waves: a layer's wave is one more than the deepest solved layer
upstream of it in that block (found once by walking the autograd graph of one image), so every layer
sees inputs that came through the already-quantized layers before it, exactly as in ``gptq_mode``'s
one-pass-per-layer order, and the layers of one wave share one replay of that block only. The
quantized block then runs once more to produce the next blocks' inputs.

The images go through the blocks in chunks of ``CHUNK_IMAGES`` (Brevitas re-quantizes a layer's
weights on every call, and batch 1 pays that per image). Each image's ``x x^T`` is a float32 product
(half the time of a float64 one, and the Hessian's largest cost; a 1x1 conv's input is used as it
is, not unfolded) added to a float64 sum in image order. The solve is the math of Brevitas'
``GPTQ.single_layer_update`` (damping 1% of the mean diagonal, ``act_order`` off by default), in
float64 and one thread. Two runs on the same thread count give the same bytes.

The arithmetic is not ``gptq_mode``'s, so the integers are not the loop's: with its running float32
average, its float32 solve and one image per forward, the block-sequential order gives every integer
of the loop (on the whole yolov10n, 16 images; ``tests/integration/test_gptq.py`` on a stack), but
batched convs round differently in oneDNN and the fast path keeps them. GPTQ's column-by-column error
feedback spreads any last-bit change, so each arithmetic is one draw of the same method (README,
"GPTQ"). The thread count reaches the integers through oneDNN's convolutions only: with them off,
1 and 2 threads give the same integers, at 1.18x the GPTQ time (benchmarks/gptq_speed.py
``--onednn-cost``), so they stay on.

:func:`brevitas_gptq_loop` is the previous method (one pass over the calibration set per layer,
through the whole prefix of the network). It is kept for the benchmark and the equivalence test only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from yqt.quant.blocks import DEFAULT_CACHE_BUDGET, ActivationStore, Block, BlockRunner, top_blocks
from yqt.quant.layers import quantized_layers
from yqt.runs import captured_output

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (what, layers solved, layers in all)
GRAM_STEP = 256  # rows per slab of the Hessian's upper triangle (a fixed order: no thread-count dependence here)
CHUNK_IMAGES = 8  # images per forward: Brevitas re-quantizes every weight on each call, and batch 1 pays it per image


@dataclass(frozen=True)
class GptqStats:
    layers: int  # layers solved
    blocks: int  # blocks that held a solved layer
    passes: int  # block replays over the images (one per wave), not counting each block's final run
    cache_peak_bytes: int  # block activations held in memory at most
    cache_spilled_bytes: int  # written to disk because the in-memory budget was full
    seconds: float
    hessian_s: float  # of ``seconds``: the input Gram matrices
    solve_s: float  # of ``seconds``: the GPTQ updates (the rest is the blocks' forward passes)


class _Stop(Exception):
    """Raised by the last Hessian hook of a wave: the rest of the block is not needed."""


def _solvable(module: Any) -> bool:
    """The layers ``gptq_mode`` would solve: quantized conv/linear with the weight quantizer on."""
    import torch.nn as nn

    with captured_output("import brevitas"):
        from brevitas.graph.gpxq import SUPPORTED_CONV_OP
        from brevitas.graph.utils import is_conv_transposed, is_quant_module

    if not (is_quant_module(module) and isinstance(module, (nn.Linear, *SUPPORTED_CONV_OP))):
        return False
    return bool(module.weight_quant.is_quant_enabled) and not is_conv_transposed(module)


def _gram(x: Any) -> Any:
    """``x @ x^T`` per group, [g, c, n] → [g, c, c], computing the upper triangle in slabs and mirroring it."""
    g, c, _ = x.shape
    if c <= 2 * GRAM_STEP:
        return x @ x.mT
    out = x.new_empty((g, c, c))
    for i in range(0, c, GRAM_STEP):
        j = min(i + GRAM_STEP, c)
        out[:, i:j, i:] = x[:, i:j] @ x[:, i:].mT
        out[:, j:, i:j] = out[:, i:j, j:].mT
    return out


def _waves(block: Block, first_input: Any, names: dict[str, Any]) -> list[list[str]]:
    """The block's solvable layers grouped so that no layer depends on another of its own or a later
    wave. Dependencies come from the autograd graph of one forward with the layers' weights
    requiring grad (so a ``detach`` of the block's input, as in YOLOv10's one-to-one head, loses none)."""
    import torch

    owner: dict[Any, str] = {}
    upstream: dict[str, set[str]] = {}  # in the order the layers run

    def ancestors(node: Any) -> set[str]:
        seen, stack, found = set(), [node], set()
        while stack:
            n = stack.pop()
            if n is None or n in seen:
                continue
            seen.add(n)
            if n in owner:
                found.add(owner[n])
            stack.extend(f for f, _ in n.next_functions)
        return found

    def pre(name: str) -> Callable[..., None]:
        def hook(_m: Any, inputs: tuple[Any, ...]) -> None:
            upstream[name] = upstream.get(name, set()) | ancestors(inputs[0].grad_fn)

        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(_m: Any, _inputs: Any, output: Any) -> None:
            if output.grad_fn is not None:
                owner[output.grad_fn] = name

        return hook

    handles = []
    for name, layer in names.items():
        handles += [layer.register_forward_pre_hook(pre(name)), layer.register_forward_hook(post(name))]
        layer.weight.requires_grad_(True)
    try:
        with torch.enable_grad():
            block.module(first_input)
    finally:
        for h in handles:
            h.remove()
        for layer in names.values():
            layer.weight.requires_grad_(False)
    wave: dict[str, int] = {}
    for name, ups in upstream.items():  # run order: a layer's upstream layers come before it
        wave[name] = 1 + max((wave[u] for u in ups), default=-1)
    for name in names:  # a layer the block never ran: last, on its own (it gets no Hessian)
        wave.setdefault(name, max(wave.values(), default=-1) + 1)
    return [[n for n in names if wave[n] == w] for w in range(max(wave.values()) + 1)]


def _image_columns(layer: Any, x: Any) -> Iterator[Any]:
    """A layer's input, image by image, as the columns its weights multiply: [groups, in/groups *
    kernel, positions]. The layout of Brevitas' ``GPxQ.process_input`` (unfold, then split by group);
    a 1x1 stride-1 conv's input is already that layout, so it is only viewed, not unfolded."""
    import torch.nn as nn
    import torch.nn.functional as F

    if isinstance(layer, nn.Linear):
        yield x.reshape(-1, x.shape[-1]).t().unsqueeze(0)
        return
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str) or x.dim() != 4:
        raise NotImplementedError(f"GPTQ: {type(layer).__name__} with padding {layer.padding!r}/{layer.padding_mode}")
    pointwise = tuple(layer.kernel_size) == (1, 1) and tuple(layer.stride) == (1, 1) and tuple(layer.padding) == (0, 0)
    for image in x.split(1):
        if pointwise:
            cols = image.reshape(1, image.shape[1], -1)
        else:
            cols = F.unfold(image, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        yield cols.view(layer.groups, -1, cols.shape[-1])


def _input_gram(layer: Any, x: Any) -> tuple[Any, int]:
    """``sum(x x^T)`` over the images of a batch (float32 products, summed in float64 in image order),
    and the number of columns summed."""
    import torch

    total, count = None, 0
    for cols in _image_columns(layer, x):
        gram = _gram(cols).to(torch.float64)
        total, count = (gram if total is None else total + gram), count + cols.shape[-1]
    return total, count


class _Hessians:
    """Pre-hooks that accumulate each wave layer's ``sum(x x^T)`` image by image (float32 products in a
    float64 sum, or ``gptq_mode``'s running float32 average with ``loop_arithmetic``), and stop the
    block once every layer of the wave has seen the current chunk of images."""

    def __init__(self, layers: dict[str, Any], loop_arithmetic: bool = False) -> None:
        self.layers = layers
        self.loop_arithmetic = loop_arithmetic
        self.sums: dict[str, Any] = {}
        self.count = dict.fromkeys(layers, 0)
        self.seen: set[str] = set()
        self.seconds = 0.0
        self.handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in layers.items()]

    def _hook(self, name: str) -> Callable[..., None]:
        import torch

        def hook(module: Any, inputs: tuple[Any, ...]) -> None:
            t = time.perf_counter()
            if self.loop_arithmetic:  # gptq_mode's running float32 average, image by image
                for x in _image_columns(module, inputs[0]):
                    n = x.shape[-1]
                    h = self.sums.get(name, torch.zeros(x.shape[0], x.shape[1], x.shape[1]))
                    h *= self.count[name] / (self.count[name] + n)
                    x = math.sqrt(2 / (self.count[name] + n)) * x
                    self.sums[name] = h + x.bmm(x.transpose(2, 1))
                    self.count[name] += n
            else:
                gram, n = _input_gram(module, inputs[0])
                self.sums[name] = self.sums[name] + gram if name in self.sums else gram
                self.count[name] += n
            self.seen.add(name)
            self.seconds += time.perf_counter() - t
            if len(self.seen) == len(self.layers):
                raise _Stop

        return hook

    def hessian(self, name: str) -> Any:
        """``2/N sum(x x^T)`` in float64 (Brevitas' normalisation; GPTQ's result does not depend on it),
        or None when the layer never ran."""
        import torch

        if name not in self.sums:
            return None
        if self.loop_arithmetic:
            return self.sums.pop(name).to(torch.float64)
        return self.sums.pop(name) * (2.0 / self.count[name])

    def run(self, block: Block, inputs: Any) -> None:
        for x in inputs:
            self.seen.clear()
            with contextlib.suppress(_Stop):
                block.module(x)

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _frozen_grid(layer: Any) -> tuple[Any, int, int]:
    """The layer's frozen per-output-channel scale (float64, [out]) and its integer range."""
    import torch

    from yqt.quant.modes import weight_range

    qw = layer.quant_weight()
    lo, hi = weight_range(int(qw.bit_width))
    return qw.scale.detach().reshape(-1).to(torch.float64), lo, hi


def brevitas_update(layer: Any, hessian: Any, act_order: bool = False) -> bool:
    """``gptq_mode``'s own solve: Brevitas' float32 ``GPTQ.single_layer_update`` (100 column blocks)
    from the given Hessian. For ``loop_arithmetic`` only."""
    import torch

    with captured_output("import brevitas"):
        from brevitas.graph.gptq import GPTQ

    if hessian is None:
        return False
    solver = GPTQ(layer, "layer", act_order, 1, False, 100, "cpu", torch.float32)
    solver.H = hessian.to(torch.float32)
    solver.single_layer_update()
    return True


def gptq_update(layer: Any, hessian: Any, act_order: bool = False, percdamp: float = 0.01) -> bool:
    """GPTQ on one layer, in place, with its frozen scale: the weights absorb each column's rounding
    error, in column order (or by the Hessian's diagonal with ``act_order``).

    The math of Brevitas' ``GPTQ.single_layer_update`` (and IST-DASLab's): dead inputs zeroed, damping
    ``percdamp`` times the mean diagonal, the upper Cholesky factor of the inverse Hessian, lazy
    updates in blocks of 128 columns. Here in float64, all groups of a grouped conv at once, and in one
    thread, so the result does not depend on the thread count.
    """
    import torch

    if hessian is None:
        log.warning("GPTQ: a layer never ran on the calibration images; left round-to-nearest")
        return False
    scale, lo, hi = _frozen_grid(layer)
    weight = layer.weight.data
    groups = hessian.shape[0]
    w = weight.reshape(groups, weight.shape[0] // groups, -1).to(torch.float64)  # [g, rows, columns], a copy
    s = scale.view(groups, -1)  # [g, rows]
    h = hessian.clone()
    columns = h.shape[-1]
    diag = torch.arange(columns)
    dead = h[:, diag, diag] == 0
    h[:, diag, diag] = torch.where(dead, torch.ones_like(h[:, diag, diag]), h[:, diag, diag])
    w.masked_fill_(dead.unsqueeze(1), 0.0)
    perm = None
    if act_order:
        perm = torch.argsort(h[:, diag, diag], dim=1, descending=True, stable=True)  # [g, columns]
        h = torch.gather(torch.gather(h, 1, perm.unsqueeze(2).expand_as(h)), 2, perm.unsqueeze(1).expand_as(h))
        w = torch.gather(w, 2, perm.unsqueeze(1).expand_as(w))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        h[:, diag, diag] += percdamp * h[:, diag, diag].mean(dim=1, keepdim=True)
        try:
            hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
        except torch.linalg.LinAlgError:
            log.warning("GPTQ: a layer's Hessian is not positive definite; left round-to-nearest")
            return False
        q = torch.empty_like(w)
        for i1 in range(0, columns, 128):
            i2 = min(i1 + 128, columns)
            err = torch.empty_like(w[:, :, i1:i2])
            for i in range(i1, i2):
                col = w[:, :, i]
                qcol = torch.clamp(torch.round(col / s), lo, hi) * s
                q[:, :, i] = qcol
                e = (col - qcol) / hinv[:, i, i].unsqueeze(1)  # [g, rows]
                err[:, :, i - i1] = e
                w[:, :, i:i2] -= e.unsqueeze(2) * hinv[:, i, i:i2].unsqueeze(1)
            w[:, :, i2:] -= err @ hinv[:, i1:i2, i2:]
    finally:
        torch.set_num_threads(threads)
    if perm is not None:
        q = torch.empty_like(q).scatter_(2, perm.unsqueeze(1).expand_as(q), q)
    weight.copy_(q.reshape(weight.shape).to(weight.dtype))
    return True


def _chunks(batches: Sequence[Any], size: int) -> list[Any]:
    """The images concatenated into batches of ``size`` (the last one smaller), in order."""
    import torch

    return [torch.cat(list(batches[i : i + size])) for i in range(0, len(batches), size)]


def _first_image(x: Any) -> Any:
    return [t[:1] for t in x] if isinstance(x, list) else x[:1]


def gptq_blockwise(
    module: Any,
    batches: Sequence[Any],
    act_order: bool = False,
    progress: ProgressFn | None = None,
    cache_budget: int = DEFAULT_CACHE_BUDGET,
    chunk_images: int = CHUNK_IMAGES,
    loop_arithmetic: bool = False,
) -> GptqStats:
    """Block-sequential GPTQ, in place, on every layer whose weight quantizer is on (see the module
    docstring). The caller switches off the ones it must not solve.

    ``loop_arithmetic`` does the sums as ``gptq_mode`` does them (the Hessians as a running float32
    average, Brevitas' own float32 solve, one image per forward), for the test and the benchmark that
    show the block order gives the loop's integers. Not a user option: it is slower."""
    import torch

    t0 = time.perf_counter()
    images = len(batches)
    batches = _chunks(batches, 1 if loop_arithmetic else chunk_images)
    solve = brevitas_update if loop_arithmetic else gptq_update
    blocks = top_blocks(module)
    full = {id(m): n for n, m in module.named_modules()}
    per_block = [{full[id(m)]: m for m in b.module.modules() if _solvable(m)} for b in blocks]
    total = sum(len(n) for n in per_block)
    store = ActivationStore(cache_budget)
    runner = BlockRunner(blocks, batches, store)
    done = passes = 0
    hessian_s = solve_s = 0.0
    solved_blocks = sum(1 for n in per_block if n)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            for b, names in zip(blocks, per_block, strict=True):
                if names:
                    waves = _waves(b, _first_image(next(iter(runner.inputs(b)))), names)
                    for wave in waves:
                        hessians = _Hessians({n: names[n] for n in wave}, loop_arithmetic)
                        try:
                            hessians.run(b, runner.inputs(b))
                        finally:
                            hessians.close()
                        passes += 1
                        hessian_s += hessians.seconds
                        for n in wave:
                            t = time.perf_counter()
                            solve(names[n], hessians.hessian(n), act_order)
                            solve_s += time.perf_counter() - t
                            done += 1
                            if progress is not None:
                                progress(f"GPTQ block {b.index + 1}/{len(blocks)}", done, total)
                        del hessians
                runner.advance(b)
    finally:
        peak, spilled = store.peak_in_memory, store.spilled_bytes
        store.close()
    stats = GptqStats(done, solved_blocks, passes, peak, spilled, time.perf_counter() - t0, hessian_s, solve_s)
    log.info("GPTQ solved %d layers in %d blocks on %d images (%d block passes, cache peak %.0f MiB, "
             "spilled %.0f MiB)", done, solved_blocks, images, passes, peak / 2**20, spilled / 2**20)  # fmt: skip
    return stats


def _below_8_bits(module: Any, solve: Callable[[], Any]) -> Any:
    """Run ``solve`` with every layer at 8 bits or more switched off (float, not solved), then back on:
    those keep round-to-nearest."""
    layers = quantized_layers(module)
    high = [m for m in layers.values() if float(m.quant_weight().bit_width) >= 8]
    if len(high) == len(layers):
        return None
    for m in high:
        m.weight_quant.disable_quant = True
    try:
        return solve()
    finally:
        for m in high:
            m.weight_quant.disable_quant = False


def apply_gptq(
    module: Any,
    batches: Sequence[Any],
    act_order: bool = False,
    progress: ProgressFn | None = None,
    cache_budget: int = DEFAULT_CACHE_BUDGET,
) -> int:
    """Block-sequential GPTQ in place on every Brevitas layer below 8 bits. Returns the layers solved."""
    stats = _below_8_bits(module, lambda: gptq_blockwise(module, batches, act_order, progress, cache_budget))
    return 0 if stats is None else stats.layers


def brevitas_gptq_loop(
    module: Any, batches: Sequence[Any], act_order: bool = False, progress: ProgressFn | None = None
) -> int:
    """The previous method, Brevitas' ``gptq_mode``: one pass over all images through the whole network
    prefix per solved layer. For the benchmark and the equivalence test only (not a user option)."""
    import torch

    with captured_output("import brevitas"):
        from brevitas.graph.gptq import gptq_mode

    def solve() -> int:
        with warnings.catch_warnings(), torch.no_grad(), gptq_mode(module, act_order=act_order) as gptq:
            warnings.simplefilter("ignore")
            total = gptq.num_layers
            for done in range(1, total + 1):
                for x in batches:
                    gptq.model(x)
                gptq.update()
                if progress is not None:
                    progress("GPTQ (Brevitas loop)", done, total)
        return total

    solved = _below_8_bits(module, solve)
    return solved or 0
