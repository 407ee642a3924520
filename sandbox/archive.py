"""Agent session archives: a manifest and regular files in a gzip'd tar, packed and read with
caps on every size, since each side gets the archive from the other (the bot from a sandbox
it does not trust)."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MANIFEST = "manifest.json"
FILES = "files"
MAX_MEMBERS = 2000
# The unpacked size may be this many times the packed cap (session logs compress ~10x; a
# zip bomb is stopped at this point, not after filling memory).
UNPACKED_FACTOR = 4
MAX_NAME = 512
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PART = re.compile(r"[A-Za-z0-9._@+=,-]{1,128}")


class ArchiveError(Exception):
    """An archive that is refused; the message says why, and never holds its contents."""


@dataclass(frozen=True)
class Session:
    """One agent session: whose, its id, and its files by path relative to the CLI's own
    session directory."""

    agent: str
    session_id: str
    files: dict[str, bytes]

    @property
    def size(self) -> int:
        return sum(len(content) for content in self.files.values())


def check_path(name: str) -> str:
    """`name` if it is a plain relative path (no `..`, no absolute path, no odd characters);
    ArchiveError otherwise."""
    path = PurePosixPath(name)
    if (not name or len(name) > MAX_NAME or name.startswith("/") or "\\" in name
            or path.as_posix() != name or not all(_PART.fullmatch(p) for p in path.parts)
            or any(p in (".", "..") for p in path.parts)):
        raise ArchiveError(f"the archive holds a path that is not allowed: {name[:80]!r}")
    return name


def pack(session: Session, max_bytes: int) -> bytes:
    """The session as an archive of at most `max_bytes`; ArchiveError when it is larger."""
    if not SESSION_ID.fullmatch(session.session_id):
        raise ArchiveError("the session id is not allowed")
    if len(session.files) + 1 > MAX_MEMBERS:
        raise ArchiveError(f"the session has over {MAX_MEMBERS - 1} files")
    if session.size > max_bytes * UNPACKED_FACTOR:
        raise ArchiveError(f"the session is {session.size} bytes unpacked; the limit is "
                           f"{max_bytes * UNPACKED_FACTOR}")
    buffer = io.BytesIO()
    manifest = json.dumps({"agent": session.agent, "session_id": session.session_id}).encode()
    members = [(MANIFEST, manifest)] + [(f"{FILES}/{check_path(path)}", content)
                                        for path, content in sorted(session.files.items())]
    # mtime 0 and no owner: the same session always packs to the same bytes.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o600, 0
            tar.addfile(info, io.BytesIO(content))
    # zlib's gzip header carries no file name and no time (gzip.compress would add the time).
    squeezer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    data = squeezer.compress(buffer.getvalue()) + squeezer.flush()
    if len(data) > max_bytes:
        raise ArchiveError(f"the session is {len(data)} bytes packed; the limit is {max_bytes}")
    return data


def _gunzip(data: bytes, limit: int) -> bytes:
    """The one gzip member of `data`, decompressed up to `limit` bytes (ArchiveError past it)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while True:
            # At most one byte past the limit: enough to tell, never a bomb's worth.
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                break
            pending = inflater.unconsumed_tail
            if inflater.eof or not pending:
                break
    except zlib.error:
        raise ArchiveError("the archive is not gzip data") from None
    if len(out) > limit:
        raise ArchiveError(f"the archive unpacks to over {limit} bytes")
    if not inflater.eof:
        raise ArchiveError("the archive is cut short")
    if inflater.unused_data.strip(b"\0"):
        raise ArchiveError("the archive has data after its end")
    return bytes(out)


def unpack(data: bytes, max_bytes: int, *, agents: tuple[str, ...] | None = None) -> Session:
    """The session in an archive of at most `max_bytes`, every member checked: regular files
    only (no links or devices), plain relative paths, no duplicates, bounded counts and sizes."""
    if len(data) > max_bytes:
        raise ArchiveError(f"the archive is {len(data)} bytes; the limit is {max_bytes}")
    raw = _gunzip(data, max_bytes * UNPACKED_FACTOR)
    manifest: dict[str, object] | None = None
    files: dict[str, bytes] = {}
    unpacked = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"the archive has over {MAX_MEMBERS} members")
                if member.isdir():
                    check_path(member.name.rstrip("/"))
                    continue
                if not member.isreg() or member.issparse():
                    kind = "link" if member.issym() or member.islnk() else "special file"
                    raise ArchiveError(f"the archive holds a {kind}: {member.name[:80]!r}")
                name = check_path(member.name)
                unpacked += member.size
                if unpacked > len(raw):  # sizes the data cannot hold
                    raise ArchiveError("the archive's members claim more than it holds")
                extracted = tar.extractfile(member)
                content = extracted.read() if extracted else b""
                if name == MANIFEST and manifest is None:
                    manifest = _manifest(content)
                elif name.startswith(FILES + "/") and name[len(FILES) + 1:] not in files:
                    files[name[len(FILES) + 1:]] = content
                else:
                    raise ArchiveError(f"the archive holds an unexpected member: {name[:80]!r}")
    except (tarfile.TarError, EOFError):
        raise ArchiveError("the archive is not a tar file") from None
    if manifest is None:
        raise ArchiveError("the archive has no manifest")
    agent, session_id = str(manifest["agent"]), str(manifest["session_id"])
    if agents is not None and agent not in agents:
        raise ArchiveError(f"the archive is of an unknown agent {agent[:40]!r}")
    return Session(agent, session_id, files)


def _manifest(content: bytes) -> dict[str, object]:
    try:
        manifest = json.loads(content)
    except ValueError:
        raise ArchiveError("the archive's manifest is not JSON") from None
    if (not isinstance(manifest, dict) or not isinstance(manifest.get("agent"), str)
            or not isinstance(manifest.get("session_id"), str)
            or not SESSION_ID.fullmatch(manifest["session_id"])):
        raise ArchiveError("the archive's manifest names no agent and session id")
    return manifest


def write_files(session: Session, root: Path) -> None:
    """Write the session's files under `root` (created), never through a link: a directory
    of a path that is a link or a file is refused, and a file there already (or a link in
    its place) is replaced, not written into."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for name, content in session.files.items():
        target = root.joinpath(*PurePosixPath(check_path(name)).parts)
        for parent in reversed(target.relative_to(root).parents):
            directory = root / parent
            if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
                raise ArchiveError(f"the session's path {name[:80]!r} meets a link or a file")
            directory.mkdir(exist_ok=True, mode=0o700)
        if target.is_dir() and not target.is_symlink():
            raise ArchiveError(f"the session's file {name[:80]!r} is a directory here")
        temporary = target.with_name(f".{target.name}.{os.getpid()}.restoring")
        descriptor = os.open(temporary, flags, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(content)
        os.replace(temporary, target)  # replaces a link itself, never what it points to


def read_files(root: Path, names: list[str], max_bytes: int) -> dict[str, bytes]:
    """The regular files `names` (and the regular files under directories among them) below
    `root`, links skipped, by path relative to `root`; ArchiveError past `max_bytes`."""
    found: dict[str, bytes] = {}
    total = 0
    for name in names:
        start = root / name
        paths = [start] if start.is_file() and not start.is_symlink() else []
        if start.is_dir() and not start.is_symlink():
            for parent, dirs, files in os.walk(start):  # os.walk does not follow links
                dirs.sort()
                paths += [Path(parent, f) for f in sorted(files)]
        for path in paths:
            if path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            try:
                check_path(relative)
            except ArchiveError:
                continue  # a file the CLI named oddly is left out, not a reason to keep none
            # Never more than the cap is read (a sparse file can claim terabytes).
            with open(path, "rb") as source:
                content = source.read(max_bytes - total + 1)
            total += len(content)
            if total > max_bytes:
                raise ArchiveError(f"the session is over {max_bytes} bytes unpacked")
            found[relative] = content
    return found
