"""Session archives: what packs, and every hostile archive that is refused (each side gets
the archive from the other, and the bot's from a sandbox it does not trust)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import zlib
from pathlib import Path

import pytest

from sandbox.archive import (
    MANIFEST,
    MAX_MEMBERS,
    ArchiveError,
    Session,
    pack,
    read_files,
    unpack,
    write_files,
)

LIMIT = 64 * 1024
SESSION = Session("claude", "0b6f0c1e-8f0e-4d51-9b0a-5e5f3c1d2a11",
                  {"0b6f0c1e-8f0e-4d51-9b0a-5e5f3c1d2a11.jsonl": b'{"type":"user"}\n',
                   "0b6f0c1e-8f0e-4d51-9b0a-5e5f3c1d2a11/subagents/agent-1.jsonl": b"{}\n"})


def tar_of(*members: tarfile.TarInfo | tuple[str, bytes], manifest: bool = True,
           compress: bool = True) -> bytes:
    """A gzip'd tar with the given members (and a valid manifest first, unless told not)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if manifest:
            body = json.dumps({"agent": "claude", "session_id": "s1"}).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, content = member
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    raw = buffer.getvalue()
    return gzip.compress(raw) if compress else raw


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_a_session_packs_to_the_same_bytes_and_back() -> None:
    data = pack(SESSION, LIMIT)
    assert data == pack(SESSION, LIMIT)  # no times or owners in it
    assert unpack(data, LIMIT) == SESSION


def test_packing_refuses_a_session_over_the_cap() -> None:
    big = Session("claude", "s1", {"s1.jsonl": bytes(range(256)) * 4096})  # 1 MiB, no pattern
    with pytest.raises(ArchiveError, match="bytes unpacked|bytes packed"):
        pack(big, LIMIT)


@pytest.mark.parametrize(("archive", "says"), [
    (tar_of(("files/../../etc/passwd", b"x")), "path that is not allowed"),
    (tar_of(("/etc/passwd", b"x")), "path that is not allowed"),
    (tar_of(("files/a/./b", b"x")), "path that is not allowed"),
    (tar_of(("files/a\\..\\b", b"x")), "path that is not allowed"),
    (tar_of(("files/a\nb", b"x")), "path that is not allowed"),
    (tar_of(link("files/s1.jsonl", "/etc/shadow")), "holds a link"),
    (tar_of(link("files/s1.jsonl", "files/x", tarfile.LNKTYPE)), "holds a link"),
    (tar_of(link("files/fifo", "", tarfile.FIFOTYPE)), "special file"),
    (tar_of(link("files/dev", "", tarfile.CHRTYPE)), "special file"),
    (tar_of(("files/a", b"1"), ("files/a", b"2")), "unexpected member"),
    (tar_of(("other/a", b"1")), "unexpected member"),
    (tar_of(("files/a", b"1"), manifest=False), "no manifest"),
    (tar_of((MANIFEST, b"not json"), manifest=False), "not JSON"),
    (tar_of((MANIFEST, b'{"agent": "claude", "session_id": "../x"}'), manifest=False),
     "names no agent and session id"),
    (b"not gzip at all", "not gzip data"),
    (gzip.compress(b"not a tar file" * 100), "not a tar file"),
    (tar_of(("files/a", b"1"))[:-20], "cut short"),
    (tar_of(("files/a", b"1")) + b"trailing", "data after its end"),
], ids=["dotdot", "absolute", "dot", "backslash", "newline", "symlink", "hardlink", "fifo",
        "device", "duplicate", "outside-files", "no-manifest", "bad-manifest", "bad-session-id",
        "not-gzip", "not-tar", "truncated", "trailing"])
def test_a_hostile_archive_is_refused(archive: bytes, says: str) -> None:
    with pytest.raises(ArchiveError, match=says):
        unpack(archive, LIMIT)


def test_a_zip_bomb_stops_at_the_unpacked_cap_without_inflating_it_all() -> None:
    # 1 GiB of zeros is ~1 MiB compressed; the cap for LIMIT=2 MiB is 8 MiB unpacked.
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    bomb = b"".join(squeezer.compress(chunk) for _ in range(1024)) + squeezer.flush()
    assert len(bomb) < 2 * 1024 * 1024
    with pytest.raises(ArchiveError, match="unpacks to over 8388608 bytes"):
        unpack(bomb, 2 * 1024 * 1024)


def test_an_archive_over_the_packed_cap_is_refused_before_unpacking() -> None:
    with pytest.raises(ArchiveError, match="the limit is 10"):
        unpack(pack(SESSION, LIMIT), 10)


def test_members_that_claim_more_than_the_archive_holds_are_refused() -> None:
    sparse = tarfile.TarInfo("files/a")
    sparse.type = tarfile.GNUTYPE_SPARSE
    with pytest.raises(ArchiveError):
        unpack(tar_of(sparse), LIMIT)


def test_too_many_members_are_refused() -> None:
    many = [(f"files/f{n}", b"") for n in range(MAX_MEMBERS + 1)]
    with pytest.raises(ArchiveError, match="members"):
        unpack(tar_of(*many), LIMIT * 16)


def test_another_agents_archive_is_refused_when_agents_are_named() -> None:
    with pytest.raises(ArchiveError, match="unknown agent"):
        unpack(pack(SESSION, LIMIT), LIMIT, agents=("codex",))


def test_files_are_written_under_the_root_and_never_through_a_link(tmp_path: Path) -> None:
    root = tmp_path / "projects" / "-workspace"
    write_files(SESSION, root)
    assert (root / "0b6f0c1e-8f0e-4d51-9b0a-5e5f3c1d2a11.jsonl").read_bytes() == \
        b'{"type":"user"}\n'
    assert (root / "0b6f0c1e-8f0e-4d51-9b0a-5e5f3c1d2a11/subagents/agent-1.jsonl").exists()

    # A directory of the session's path that is a link (the agent's own doing, say) stops it.
    other = tmp_path / "other"
    other.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (other / "d").symlink_to(elsewhere)
    with pytest.raises(ArchiveError, match="meets a link"):
        write_files(Session("claude", "s", {"d/f.jsonl": b"x"}), other)
    assert list(elsewhere.iterdir()) == []
    # And a link where a file goes is replaced, not written through (as is a file there).
    (elsewhere / "target").write_bytes(b"kept")
    (other / "s.jsonl").symlink_to(elsewhere / "target")
    (other / "t.jsonl").write_bytes(b"older")
    write_files(Session("claude", "s", {"s.jsonl": b"x", "t.jsonl": b"newer"}), other)
    assert not (other / "s.jsonl").is_symlink() and (other / "s.jsonl").read_bytes() == b"x"
    assert (other / "t.jsonl").read_bytes() == b"newer"
    assert (elsewhere / "target").read_bytes() == b"kept"
    assert sorted(os.listdir(other)) == ["d", "s.jsonl", "t.jsonl"]


def test_reading_a_session_skips_links_and_caps_the_size(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "s1").mkdir(parents=True)
    (root / "s1.jsonl").write_bytes(b"line\n")
    (root / "s1" / "sub.jsonl").write_bytes(b"sub\n")
    secret = tmp_path / "secret"
    secret.write_text("the operator's key")
    (root / "s1" / "leak.jsonl").symlink_to(secret)
    (root / "unrelated.jsonl").write_bytes(b"another session\n")
    found = read_files(root, ["s1.jsonl", "s1"], LIMIT)
    assert found == {"s1.jsonl": b"line\n", "s1/sub.jsonl": b"sub\n"}
    with pytest.raises(ArchiveError, match="over 4 bytes"):
        read_files(root, ["s1.jsonl"], 4)
    # A sparse file that claims a terabyte is read no further than the cap.
    with open(root / "s1.jsonl", "wb") as huge:
        huge.truncate(1 << 40)
    with pytest.raises(ArchiveError, match="over 1024 bytes"):
        read_files(root, ["s1.jsonl"], 1024)
    # A FIFO in the session's place is skipped, never read (it would block).
    (root / "s1.jsonl").unlink()
    os.mkfifo(root / "s1.jsonl")
    assert read_files(root, ["s1.jsonl"], 1024) == {}
