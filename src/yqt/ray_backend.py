"""``--ray``: eval shards, sensitivity shards and pipeline steps as Ray tasks.

Only this module imports Ray, and only when a command is given ``--ray``. Ray schedules; yqt keeps
its rules: the driver scores an eval once with pycocotools, ranks the layers once, and a pipeline
step run on a worker records, reuses and fails exactly as the serial step does (the tasks call the
very same step functions of :mod:`yqt.pipeline`).

Files: the workers read the weights, the images and the run folder at the **same path** the driver
passes, so that path must be one every node sees (one machine, or a shared filesystem). Nothing
goes through Ray's object store but configs and results. Before it reads them, a task checks every
file against the sha256 the driver saw; a node that sees other bytes (or no file) fails the task
with one line naming the file and the node.

Faults: a task whose worker process dies (killed, out of memory) is run again, at most
:data:`MAX_RETRIES` more times; an eval shard or a probe is a pure function of its files, so its
result is the same. A task that raises a user error is not retried.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yqt.errors import Interrupted, YqtError
from yqt.runs import sha256_file

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'yqt[ray]'"
LOCAL = "local"  # bare --ray: a Ray instance of our own on this machine, for this command only
AUTO = "auto"  # the cluster `ray start` made on this machine (or RAY_ADDRESS)
MAX_RETRIES = 2  # a task whose worker died runs again at most this many times
CONNECT_TIMEOUT_S = 5.0
_ADDRESS_RE = re.compile(r"^(ray://)?\[?[A-Za-z0-9_.:-]*?\]?:\d{1,5}$")


def is_address(value: str) -> bool:
    """Whether a word after ``--ray`` is an address (``local``, ``auto``, ``HOST:PORT``), not a path."""
    return value in (LOCAL, AUTO) or bool(_ADDRESS_RE.match(value))


# Ray advertises a node by the machine's outward address even when told 127.0.0.1, unless it thinks
# it runs where clusters are off (its Windows/macOS switch, read when ray is imported): then a node
# serves on loopback only. A local instance needs nothing more, and nothing of it is reachable from outside.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def keep_on_loopback() -> None:
    """Keep a Ray started by this process on 127.0.0.1 (before ray is first imported)."""
    import sys

    if "ray" not in sys.modules:
        for key, value in LOOPBACK_ONLY.items():
            os.environ.setdefault(key, value)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise YqtError("--ray needs Ray, which is not installed", EXTRA_HINT) from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _probe(address: str) -> None:
    """One short TCP connect, so that an address nobody answers at fails in seconds, not minutes."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise YqtError(
            f"no Ray cluster answers at {address} ({reason} within {CONNECT_TIMEOUT_S:g} s)",
            "start one there with `ray start --head`, or pass --ray alone for a local instance",
        ) from None


def _runtime_env() -> dict[str, Any]:
    # Workers import yqt as the driver does: a PYTHONPATH the driver runs with goes with the tasks.
    path = os.environ.get("PYTHONPATH")
    if not path:
        return {}
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(str(Path(p).resolve()) for p in path.split(os.pathsep) if p)}}


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Ray's C++ core writes its start-up notes and retries to fd 2; keep them out of the CLI's stderr
    (they go to the log instead, at debug level)."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                log.debug("ray.init said:\n%s", text)


@contextlib.contextmanager
def connect(address: str) -> Iterator[Cluster]:
    """Join (or start) the Ray cluster for one command; a Ray already initialised here is used as is."""
    if address == LOCAL:
        keep_on_loopback()
    ray = _import_ray()
    if ray.is_initialized():
        yield Cluster(ray)
        return
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "runtime_env": _runtime_env()}
    try:
        if address == LOCAL:
            with _quiet_stderr():
                ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **common)
        else:
            if address != AUTO:
                _probe(address)
            # Ray retries a GCS that does not answer once a second, 20 times by default, loudly.
            with _quiet_stderr(), _environ(RAY_gcs_server_port_wait_time_s=str(round(CONNECT_TIMEOUT_S))):
                ray.init(address=address, **common)
    except YqtError:
        raise
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: Ray's words, on one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise YqtError(
            f"cannot join the Ray cluster at {address}: {first}",
            "start one with `ray start --head`, or pass --ray alone for a local instance",
        ) from None
    try:
        yield Cluster(ray)
    finally:
        ray.shutdown()


# ------------------------------------------------------------------------------------------ on a worker


@dataclass(frozen=True)
class Node:
    """Where a task ran."""

    id: str
    ip: str
    host: str
    pid: int

    def label(self) -> str:
        return f"{self.ip}/{self.id[:8]}"


def this_node() -> Node:
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    # The address the node joined with (ray start --node-ip-address), not a guess from the routes.
    ip = next((n["NodeManagerAddress"] for n in ray.nodes() if n.get("NodeID") == node_id), None)
    return Node(id=node_id, ip=ip or ray.util.get_node_ip_address(), host=socket.gethostname(), pid=os.getpid())


@dataclass(frozen=True)
class _Failed:
    """A user error raised on a worker, carried back whole (exceptions lose their hint in transit)."""

    message: str
    hint: str | None
    exit_code: int


def _guarded(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except YqtError as exc:
        return _Failed(exc.message, exc.hint, exc.exit_code)


def require_same_file(path: Path, sha256: str, what: str) -> None:
    """The file at ``path`` on this node must be the one the driver hashed."""
    path = Path(path)
    where = f"node {this_node().label()}"
    if not path.is_file():
        raise YqtError(
            f"{where} sees no {what} at {path}",
            "put the weights, images and run folder on a path every node sees (a shared filesystem)",
        )
    seen = sha256_file(path)
    if seen != sha256:
        raise YqtError(
            f"{where} sees other bytes at {path} (sha256 {seen[:12]}, the driver's {sha256[:12]}): {what}",
            "every node must see the same files at the same path; sync them or use a shared filesystem",
        )


def _require_version(version: str) -> None:
    from yqt import __version__

    if __version__ != version:
        raise YqtError(
            f"node {this_node().label()} runs yqt {__version__}, the driver {version}",
            "install the same yqt on every node",
        )


@dataclass(frozen=True)
class EvalShard:
    """What an eval shard returns: its images' detections, in the order it was given them."""

    node: Node
    images: list[Any]  # yqt.evaluate.ImageDetections
    seconds: float


def eval_shard(
    cfg: Any,
    onnx_sha256: str,
    items: Sequence[tuple[int, Path]],
    image_sha256: Sequence[str],
    category_ids: Sequence[int | None],
    nms: Any,
    threads: int,
    version: str,
) -> EvalShard | _Failed:
    """Run the model on one shard of the images (a Ray task). Pure: a rerun returns the same."""

    def work() -> EvalShard:
        import numpy as np

        from yqt.evaluate import infer_images
        from yqt.runtime import input_spec, open_session, require_contract

        t0 = time.perf_counter()
        _require_version(version)
        require_same_file(Path(cfg.onnx), onnx_sha256, "the model")
        for (_, path), sha in zip(items, image_sha256, strict=True):
            require_same_file(path, sha, "an image to score")
        session, _ = open_session(Path(cfg.onnx), cfg.providers, spin=False, threads=threads)
        contract = require_contract(session, Path(cfg.onnx))
        input_name, imgsz, dtype = input_spec(session)
        session.run(None, {input_name: np.zeros((1, 3, imgsz, imgsz), dtype=dtype)})  # warm-up
        images = list(infer_images(session, input_name, items, imgsz, dtype, cfg, category_ids, contract, nms))
        return EvalShard(this_node(), images, time.perf_counter() - t0)

    return _guarded(work)


@dataclass(frozen=True)
class ProbeShard:
    node: Node
    scores: list[Any]  # yqt.quant.probe.ProbeScore
    timings: dict[str, float]


def sensitivity_shard(
    cfg: Any, weights_sha256: str, calib: Any, layers: Sequence[str], version: str
) -> ProbeShard | _Failed:
    """Probe ``layers`` of the model (a Ray task): load it, read the images, sweep those layers only."""

    def work() -> ProbeShard:
        import torch

        from yqt.models import load_detector
        from yqt.quant import probe
        from yqt.quant.ranking import image_batches

        _require_version(version)
        for image in calib.images:
            require_same_file(Path(calib.folder) / image.name, image.sha256, "a sensitivity image")
        torch.manual_seed(cfg.seed)
        detector = load_detector(cfg.weights, cfg.imgsz)
        if detector.info.sha256 != weights_sha256:
            raise YqtError(
                f"node {this_node().label()} loads other weights for {cfg.weights or 'the default model'} "
                f"(sha256 {str(detector.info.sha256)[:12]}, the driver's {weights_sha256[:12]})",
                "every node must see the same checkpoint at the same path",
            )
        batches = image_batches(calib, cfg.imgsz, cfg.batch)
        with torch.no_grad():
            scores, timings = probe.sweep_layers(
                detector.module, batches, cfg.bits, cfg.act, cfg.calib_percentile, layers
            )
        return ProbeShard(this_node(), scores, timings)

    return _guarded(work)


def pipeline_step(kind: str, plan: Any, run_root: Path, run_id: str, label: str, *deps: Any) -> Any:
    """One pipeline step (a Ray task), by the serial step function; ``deps`` are the outcomes it reads."""
    return _guarded(lambda: _pipeline_step(kind, plan, run_root, run_id, label, deps))


def _pipeline_step(kind: str, plan: Any, run_root: Path, run_id: str, label: str, deps: Sequence[Any]) -> Any:
    from yqt import pipeline as pl
    from yqt.runs import Run, step_tags

    node = this_node()
    run = Run(Path(run_root), run_id)
    ex = pl._Executor(run, pl.PipelineEvents(), pl.step_count(plan.cfg))
    with step_tags("*", node={"id": node.id, "ip": node.ip, "host": node.host}):
        if kind == "export":
            outcome = pl._export(ex, plan)
        elif kind == "sensitivity":
            outcome = pl._sensitivity(ex, plan)
        elif kind == "quantize":  # deps: the export, then the sweep's ranking for a --target-bits model
            outcome = pl._quantize(ex, plan, label, deps[1] if len(deps) > 1 else None)
        elif kind == "smoke":
            outcome = pl._smoke(ex, plan, pl._Model(label, deps[0]))
        elif kind == "eval":
            outcome = pl._eval(ex, plan, pl._Model(label, deps[0]))
        elif kind == "bench":  # deps: what made each model, then each model's eval; label: the models' labels
            labels = label.split(",")
            plan.models[:] = [pl._Model(name, made) for name, made in zip(labels, deps[: len(labels)], strict=True)]
            outcome = pl._bench(ex, plan, list(deps[len(labels) :]))
        elif kind == "compare":  # after every eval and the bench
            outcome = pl._compare(ex, plan, list(deps[:-1]), deps[-1])
        elif kind == "report":
            ex.outcomes = list(deps[:-1])  # every earlier step, in the serial order: the report's input
            outcome = pl._report(ex, plan, deps[-1])
        else:
            raise ValueError(f"unknown pipeline step kind {kind!r}")
    return outcome


# ------------------------------------------------------------------------------------------ the driver


def _shards(n: int, parts: int) -> list[range]:
    """``range(n)`` in ``parts`` contiguous pieces of nearly equal size (none empty)."""
    parts = max(1, min(parts, n))
    size, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """Ctrl-C while Ray's Cython waits surfaces as a SystemError caused by it: give back the interrupt."""
    try:
        yield
    except SystemError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (Interrupted, KeyboardInterrupt)):
            raise cause from None
        raise


@dataclass
class Cluster:
    """A joined Ray cluster, and the work yqt hands it."""

    ray: Any
    nodes_used: set[str] = field(default_factory=set)

    @property
    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def _task(self, fn: Callable[..., Any], num_cpus: float = 1) -> Any:
        return self.ray.remote(fn).options(num_cpus=num_cpus, max_retries=MAX_RETRIES, retry_exceptions=False)

    def _get(self, ref: Any, what: str) -> Any:
        """One task's result; a worker that died past its retries, or a user error there, as one line."""
        from ray.exceptions import RayError, RayTaskError

        try:
            with _interrupts():
                value = self.ray.get(ref)
        except RayTaskError as exc:  # a bug on the worker: its traceback is the useful part
            raise exc.as_instanceof_cause() from None
        except RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise YqtError(
                f"{what} failed on Ray after {MAX_RETRIES} retries: {first}",
                "check the nodes' memory and logs (/tmp/ray/session_latest/logs), then rerun",
            ) from None
        if isinstance(value, _Failed):
            raise YqtError(value.message, value.hint, value.exit_code)
        return value

    @contextlib.contextmanager
    def _cancelled_on_exit(self, refs: Sequence[Any]) -> Iterator[None]:
        """Ctrl-C (or an error) on the driver cancels the tasks still running: each sees a
        KeyboardInterrupt, so a recorded step in it ends ``failed: interrupted`` as in the serial path."""
        try:
            yield
        except BaseException:
            for ref in refs:
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref)
            with contextlib.suppress(Exception):
                self.ray.wait(list(refs), num_returns=len(refs), timeout=10)
            raise

    # -------------------------------------------------------------------------------- eval

    def eval_images(
        self, cfg: Any, items: Sequence[tuple[int, Path]], category_ids: Sequence[int | None], nms: Any, step: Any
    ) -> Iterator[Any]:
        """Every image's detections, in ``items`` order, from one shard per cluster CPU."""
        from yqt import __version__

        onnx_sha = sha256_file(Path(cfg.onnx))
        shas = [sha256_file(p) for _, p in items]
        task = self._task(eval_shard)
        refs = []
        for part in _shards(len(items), self.cpus):
            shard = [items[i] for i in part]
            refs.append(task.remote(cfg, onnx_sha, shard, [shas[i] for i in part], category_ids, nms, 1, __version__))
        nodes: set[str] = set()
        with self._cancelled_on_exit(refs):
            for i, ref in enumerate(refs, 1):
                shard = self._get(ref, f"eval shard {i}/{len(refs)}")
                nodes.add(shard.node.label())
                log.info("eval shard %d/%d: %d images in %.1f s on node %s", i, len(refs), len(shard.images),
                         shard.seconds, shard.node.label())  # fmt: skip
                yield from shard.images
        self.nodes_used |= nodes
        if step is not None:
            step.summary.update(ray_shards=len(refs), ray_nodes=sorted(nodes))

    # -------------------------------------------------------------------------------- sensitivity

    def sweep_layers(
        self, cfg: Any, weights_sha256: str, calib: Any, layers: Sequence[str], progress: Any = None
    ) -> tuple[list[Any], dict[str, float]]:
        """Probe scores of ``layers`` in their order, from interleaved shards (layer i → shard i mod n),
        so that each shard gets early (slow: the whole net re-runs) and late layers alike."""
        from yqt import __version__

        t0 = time.perf_counter()
        n = max(1, min(self.cpus, len(layers)))
        task = self._task(sensitivity_shard)
        refs = [task.remote(cfg, weights_sha256, calib, list(layers[k::n]), __version__) for k in range(n)]
        by_name: dict[str, Any] = {}
        timings: dict[str, float] = {}
        with self._cancelled_on_exit(refs):
            for k, ref in enumerate(refs, 1):
                shard = self._get(ref, f"sensitivity shard {k}/{n}")
                self.nodes_used.add(shard.node.label())
                by_name.update((s.layer, s) for s in shard.scores)
                for key, value in shard.timings.items():  # the slowest shard's
                    timings[key] = max(timings.get(key, 0.0), value)
                if progress is not None:
                    progress(len(by_name), len(layers))
        timings["ray_wall_s"] = time.perf_counter() - t0
        timings["ray_shards"] = float(n)
        return [by_name[name] for name in layers], timings

    # -------------------------------------------------------------------------------- pipeline

    def pipeline_steps(self, plan: Any, run: Any, events: Any) -> list[Any]:
        """Every step as a Ray task, with its real dependencies; the outcomes in the serial order.

        export → each quantize (it reads the baseline's size; a --target-bits model also the sensitivity
        step's ranking) → each model's smoke and eval → bench (every eval) → compare (every eval and the
        bench) → report (every outcome before it).
        """
        from yqt.pipeline import BASELINE, sweeps_sensitivity, variants

        cfg = plan.cfg
        run._ensure()  # made once, here: the tasks attach to it
        before = {s["id"] for s in run.manifest()["steps"]}
        task = self._task(pipeline_step)
        root, run_id = run.root.resolve(), run.run_id
        refs: list[Any] = []

        def submit(kind: str, label: str, *deps: Any) -> Any:
            ref = task.remote(kind, plan, root, run_id, label, *deps)
            refs.append(ref)
            return ref

        export = submit("export", "")
        ranking = [submit("sensitivity", "")] if sweeps_sensitivity(cfg) else []
        makers = [(BASELINE, export)] + [
            (v.label, submit("quantize", v.label, export, *(ranking if v.target_bits is not None else [])))
            for v in variants(cfg)
        ]
        smokes = [submit("smoke", label, made) for label, made in makers]
        evals = [submit("eval", label, made) for label, made in makers]
        bench = submit("bench", ",".join(label for label, _ in makers), *(made for _, made in makers), *evals)
        compare = submit("compare", "", *evals, bench)
        order = [export, *ranking, *[m for _, m in makers[1:]], *smokes, *evals, bench, compare]
        submit("report", "", *order, compare)
        outcomes: dict[Any, Any] = {}
        pending = list(refs)
        try:
            with self._cancelled_on_exit(refs):
                while pending:
                    with _interrupts():
                        ready, pending = self.ray.wait(pending, num_returns=1)
                    outcome = self._get(ready[0], "a pipeline step")
                    outcomes[ready[0]] = outcome
                    events.started(outcome.step.name, len(outcomes), len(refs))
                    events.finished(outcome.step)
        except (Interrupted, KeyboardInterrupt) as exc:
            if isinstance(exc, Interrupted):  # name the steps the cancelled tasks recorded as interrupted
                cut = [
                    s["name"]
                    for s in run.manifest()["steps"]
                    if s["id"] not in before and s.get("error") == "interrupted"
                ]
                exc.step, exc.run_root = ", ".join(cut) or None, run.root
            raise
        return [outcomes[ref] for ref in refs]
