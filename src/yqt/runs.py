"""The run-root manager shared by every command.

A run folder holds everything about one experiment::

    runs/<id>/
      run.json              manifest: every step, its config, times, status and artifacts
      onnx/                 exported models
      logs/<step>.log       what each step logged
      configs/<step>.json   the full config of each step
      <name>-coco/          one folder per evaluation (metrics.json, detections.json, image_ids.json)

Every file is written atomically (temp name in the same folder, fsync, rename), so an interrupted
command never leaves a file that looks complete. Nothing is created on disk until the first step
starts, so bad input rejected up front leaves no empty run behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import types
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yqt.errors import Interrupted, YqtError
from yqt.records import FileArtifact, document, to_jsonable
from yqt.schema import RUN_MANIFEST, STEP_CONFIG

MANIFEST_NAME = "run.json"
RUN_ID_FORMAT = "%Y-%m-%d_%H-%M-%S"
RUNS_DIR_ENV = "YQT_RUNS_DIR"
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

log = logging.getLogger(__name__)

# Extra fields for the next step of a given name, set by a caller that runs library stages (the
# pipeline's fingerprints): the stages open their own steps, on Run objects of their own.
_STEP_TAGS: contextvars.ContextVar[Mapping[str, Mapping[str, Any]]] = contextvars.ContextVar(
    "yqt_step_tags", default=types.MappingProxyType({})
)


@contextlib.contextmanager
def step_tags(name: str, **fields: Any) -> Iterator[None]:
    """Record ``fields`` in every step called ``name`` (``"*"``: every step) started inside this block."""
    token = _STEP_TAGS.set({**_STEP_TAGS.get(), name: fields})
    try:
        yield
    finally:
        _STEP_TAGS.reset(token)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_artifact(path: Path) -> FileArtifact:
    path = Path(path)
    return FileArtifact(path=path, sha256=sha256_file(path), size_bytes=path.stat().st_size)


@contextlib.contextmanager
def captured_output(label: str) -> Iterator[None]:
    """Capture stdout/stderr, native writes included, into the step log instead of the terminal.

    The TorchScript exporter dumps its whole IR graph to fd 2 when it fails, and Brevitas and torch
    print warnings on import; the user gets our one-line error, the log keeps the rest.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
                try:
                    yield
                finally:
                    py_text = out.getvalue() + err.getvalue()
        finally:
            for fd, copy_fd in saved.items():
                os.dup2(copy_fd, fd)
                os.close(copy_fd)
            sink.seek(0)
            native = sink.read().decode("utf-8", "replace")
            text = (py_text + native).strip()
            if text:
                log.info("%s output:\n%s", label, text[-20000:])


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask alone must set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable: the directory entry is data too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it onto ``target`` only if the block succeeds.

    The published file gets the permissions any new file gets (0666 less the umask), not
    mkstemp's private 0600: a teammate, a container with another uid or a web server reads runs.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: Path, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def json_bytes(obj: Any, *, compact: bool = False) -> bytes:
    """Records (or any nesting of them) as indented JSON; ``compact`` takes plain JSON data as is.

    A record that is a whole document (it has ``SCHEMA``) is written with its ``schema`` key first.

    ``compact`` is for bulk data such as detections: converting tens of thousands of plain dicts
    through :func:`to_jsonable` and indenting them costs more than a second per eval.
    """
    if compact:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    data = document(obj) if hasattr(obj, "SCHEMA") else to_jsonable(obj)
    return (json.dumps(data, indent=2) + "\n").encode()


def atomic_write_json(target: Path, obj: Any, *, compact: bool = False) -> Path:
    return atomic_write_bytes(target, json_bytes(obj, compact=compact))


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file the user pointed at, turning every failure into a one-line error."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise YqtError(f"{what} not found: {path}", "check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise YqtError(f"{what} is not valid JSON: {path} ({exc})", "re-create it; it may be truncated") from None


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def new_run_id(runs_dir: Path) -> str:
    base = _dt.datetime.now().strftime(RUN_ID_FORMAT)
    candidate, n = base, 1
    while (runs_dir / candidate).exists():
        candidate, n = f"{base}-{n}", n + 1
    return candidate


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock: one process at a time reads, changes and rewrites run.json."""
    import fcntl

    with open(lock_file, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@dataclass
class StepHandle:
    """What a running step may add to the manifest."""

    name: str
    root: Path
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None  # a check that ran and failed: the step ends "failed" without raising

    def fail(self, reason: str) -> None:
        self.failure = reason

    def add_artifact(self, artifact: Path | FileArtifact, kind: str) -> None:
        """Record a file of this step; pass a :class:`FileArtifact` already made to skip re-hashing."""
        art = artifact if isinstance(artifact, FileArtifact) else file_artifact(artifact)
        self.artifacts.append(
            {
                "kind": kind,
                "path": _relative(art.path, self.root),
                "sha256": art.sha256,
                "size_bytes": art.size_bytes,
            }
        )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


class Run:
    """One run folder. Create with :meth:`open`; nothing touches the disk until a step starts."""

    def __init__(self, root: Path, run_id: str, fresh: bool = False) -> None:
        self.root = Path(root)
        self.run_id = run_id
        self.fresh = fresh  # a new default id: never attach to a run another process made meanwhile
        self._ready = False

    # ----------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, runs_dir: Path | None = None, run_id: str | None = None) -> Run:
        """Attach to run ``run_id`` under ``runs_dir`` (created on first use), or plan a new one."""
        runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        if runs_dir.exists() and not runs_dir.is_dir():
            raise YqtError(f"runs dir is not a folder: {runs_dir}", "pass --runs-dir DIR naming a folder")
        fresh = run_id is None
        if run_id is None:
            run_id = new_run_id(runs_dir)
        elif not _RUN_ID_RE.match(run_id):
            raise YqtError(
                f"invalid run id {run_id!r}",
                "use letters, digits, '.', '_' and '-' only, e.g. --run w8a16-try1",
            )
        root = runs_dir / run_id
        if root.exists() and not (root / MANIFEST_NAME).is_file():
            raise YqtError(
                f"{root} exists but is not a yqt run (no {MANIFEST_NAME})",
                "pick another --run id or --runs-dir",
            )
        return cls(root, run_id, fresh)

    @classmethod
    def containing(cls, artifact: Path) -> Run | None:
        """The run whose ``onnx/`` folder holds ``artifact``, if any."""
        parent = Path(artifact).resolve().parent
        if parent.name == "onnx" and (parent.parent / MANIFEST_NAME).is_file():
            return cls(parent.parent, parent.parent.name)
        return None

    @classmethod
    def for_artifact(cls, artifact: Path, runs_dir: Path | None, run_id: str | None) -> Run:
        """``--run`` when given; else the run the artifact lives in; else a new run."""
        if run_id is None:
            found = cls.containing(artifact)
            if found is not None:
                return found
        return cls.open(runs_dir, run_id)

    # ----------------------------------------------------------------------------- layout

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    @property
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def eval_dir(self, name: str) -> Path:
        return self.root / f"{name}-coco"

    def config_path(self, step: str) -> Path:
        return self.root / "configs" / f"{step}.json"

    def log_path(self, step: str) -> Path:
        return self.root / "logs" / f"{step}.log"

    def relative(self, path: Path) -> str:
        return _relative(path, self.root)

    # ----------------------------------------------------------------------------- manifest

    def manifest(self) -> dict[str, Any]:
        if not self.exists:
            return _new_manifest(self.run_id, None)
        return read_json(self.manifest_path, "run manifest")

    def _ensure(self) -> None:
        """Create the run folder whole: built under a temporary name, then renamed into place, so
        no process ever sees the folder without its run.json. A default id taken meanwhile by
        another process moves on to the next free id; an explicit id attaches."""
        if self._ready:
            return
        while not (self.exists and not self.fresh):
            parent = self.root.parent
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{self.run_id}.", suffix=".partial", dir=parent))
            try:
                os.chmod(staging, 0o777 & ~_umask())
                for sub in ("onnx", "logs", "configs"):
                    (staging / sub).mkdir()
                atomic_write_json(staging / MANIFEST_NAME, _new_manifest(self.run_id, now_iso()))
                os.rename(staging, self.root)
                fsync_dir(parent)
                break
            except OSError:
                if not self.root.exists():
                    raise
                if self.fresh:  # someone else's run now holds this default id
                    self.run_id = new_run_id(parent)
                    self.root = parent / self.run_id
                elif not self.exists:
                    raise YqtError(
                        f"{self.root} exists but is not a yqt run (no {MANIFEST_NAME})", "pick another --run id"
                    ) from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        self._ready = True

    def _save_step(self, record: dict[str, Any]) -> None:
        with _locked(self.root / ".run.json.lock"):
            manifest = self.manifest()
            steps = [s for s in manifest["steps"] if s.get("id") != record["id"]]
            steps.append(record)
            manifest["steps"] = steps
            manifest["schema"] = RUN_MANIFEST  # rewritten whole, so it is the current version
            atomic_write_json(self.manifest_path, manifest)

    @contextlib.contextmanager
    def step(self, name: str, config: Any) -> Iterator[StepHandle]:
        """Record one step: config snapshot, log file, start/end, status and artifacts.

        The step is saved as ``running`` first, so a killed process shows up as such rather than
        vanishing; the final status is ``ok`` or ``failed`` with the one-line error.
        """
        self._ensure()
        config_json = to_jsonable(config)
        atomic_write_json(self.config_path(name), {"schema": STEP_CONFIG, "step": name, **config_json})
        started = now_iso()
        record: dict[str, Any] = {
            # Unique even for two runs of the same step within one second.
            "id": f"{name}@{started}#{uuid.uuid4().hex[:8]}",
            "name": name,
            "config": config_json,
            "config_path": self.relative(self.config_path(name)),
            "log_path": self.relative(self.log_path(name)),
            "started": started,
            "ended": None,
            "status": "running",
            "artifacts": [],
            # Who runs it: a "running" step whose process is gone was killed, not still at work.
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **_STEP_TAGS.get().get("*", {}),  # tags for every step (the Ray node a pipeline step ran on)
            **_STEP_TAGS.get().get(name, {}),
        }
        self._save_step(record)
        handle = StepHandle(name, self.root)
        with _step_log(self.log_path(name)):
            log.info("step %s started in run %s", name, self.run_id)
            try:
                yield handle
            except (KeyboardInterrupt, Interrupted) as exc:
                log.error("step %s interrupted", name)
                record.update(status="failed", error="interrupted")
                if isinstance(exc, Interrupted):  # so the CLI can say what was left, and where
                    exc.step, exc.run_root = name, self.root
                raise
            except BaseException as exc:
                log.error("step %s failed: %s", name, exc)
                record.update(status="failed", error=str(exc) or type(exc).__name__)
                raise
            else:
                if handle.failure:
                    log.error("step %s failed: %s", name, handle.failure)
                    record.update(status="failed", error=handle.failure)
                else:
                    log.info("step %s finished", name)
                    record.update(status="ok")
            finally:
                record.update(ended=now_iso(), artifacts=handle.artifacts, summary=to_jsonable(handle.summary))
                self._save_step(record)

    def latest_step(self, name: str) -> dict[str, Any] | None:
        """The most recently started record of step ``name``, or ``None``."""
        records = [(s.get("started") or "", i, s) for i, s in enumerate(self.manifest().get("steps", []))]
        return max((r for r in records if r[2].get("name") == name), default=(None, None, None))[2]

    def record_failure(self, name: str, config: Any, error: str) -> None:
        """A step that failed before it could start (its input was refused), so the run shows it."""
        with contextlib.suppress(_Refused), self.step(name, config):
            raise _Refused(error)


class _Refused(Exception):
    pass


def _new_manifest(run_id: str, created: str | None) -> dict[str, Any]:
    return {"schema": RUN_MANIFEST, "run_id": run_id, "created": created, "steps": []}


def maybe_step(run: Run | None, name: str, config: Any) -> contextlib.AbstractContextManager[StepHandle | None]:
    """``run.step(...)`` for library calls that may run without a run root."""
    return run.step(name, config) if run is not None else contextlib.nullcontext(None)


def record_artifact(step: StepHandle | None, artifact: Path | FileArtifact, kind: str) -> None:
    """``step.add_artifact(...)`` when there is a step (library calls may run without a run)."""
    if step is not None:
        step.add_artifact(artifact, kind)


@contextlib.contextmanager
def _step_log(path: Path) -> Iterator[None]:
    """Send the ``yqt`` logger to ``logs/<step>.log`` while the step runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("yqt")
    saved_level = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
        handler.close()


_VERSIONED_PACKAGES = (
    "torch",
    "torchvision",
    "ultralytics",
    "brevitas",
    "onnx",
    "pycocotools",
    "numpy",
    "opencv-python",
)


def package_versions() -> dict[str, str]:
    """Versions of everything that can change a number, read without importing torch."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        versions["onnxruntime"] = "not installed"
    from yqt import __version__

    versions["yqt"] = __version__
    return versions


def torch_threads() -> int:
    """torch's intra-op thread count in this process, which GPTQ's float sums (and so its integers) depend on."""
    import torch

    return torch.get_num_threads()
