"""Git objects and refs of one fake repository, hashed exactly as git does and mirrored on disk."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path

TREE_MODE = "40000"  # how git stores it; the REST API spells it "040000"
_SHA = re.compile(r"^[0-9a-f]{40}$")


def api_mode(mode: str) -> str:
    """The mode as the REST API shows it (directories zero-padded)."""
    return "040000" if mode == TREE_MODE else mode


def git_mode(mode: str) -> str:
    """The mode as git stores it in a tree object."""
    return TREE_MODE if mode in ("040000", TREE_MODE) else mode


def kind_of_mode(mode: str) -> str:
    """`tree`, `commit` (a submodule) or `blob`."""
    mode = git_mode(mode)
    return {"40000": "tree", "160000": "commit"}.get(mode, "blob")


@dataclass(frozen=True)
class Person:
    """An author or committer line of a commit."""

    name: str
    email: str
    epoch: int

    def line(self) -> str:
        return f"{self.name} <{self.email}> {self.epoch} +0000"


class GitStore:
    """Content-addressed objects and refs; with `path`, also a bare repository real git can read."""

    def __init__(self, path: Path | None = None, default_branch: str = "main") -> None:
        self.objects: dict[str, tuple[str, bytes]] = {}
        self.refs: dict[str, str] = {}
        self.path = path
        if path is not None:
            # The layout `git init --bare` makes, written directly to spare a subprocess per repo.
            for sub in ("objects", "refs/heads", "refs/tags"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            (path / "HEAD").write_text(f"ref: refs/heads/{default_branch}\n")
            (path / "config").write_text(
                "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
            )

    # objects

    def put(self, kind: str, data: bytes) -> str:
        """Store an object; returns its SHA-1, the same one git computes."""
        raw = f"{kind} {len(data)}\0".encode() + data
        sha = sha1(raw, usedforsecurity=False).hexdigest()
        if sha not in self.objects:
            self.objects[sha] = (kind, data)
            if self.path is not None:
                loose = self.path / "objects" / sha[:2] / sha[2:]
                loose.parent.mkdir(exist_ok=True)
                loose.write_bytes(zlib.compress(raw))
        return sha

    def get(self, sha: str, kind: str | None = None) -> bytes:
        """An object's content; KeyError when absent or of another kind."""
        found_kind, data = self.objects[sha]
        if kind is not None and found_kind != kind:
            raise KeyError(sha)
        return data

    def absorb(self, other: GitStore) -> None:
        """Copy in every object another store holds."""
        for kind, data in list(other.objects.values()):
            self.put(kind, data)

    def kind(self, sha: str) -> str | None:
        entry = self.objects.get(sha)
        return entry[0] if entry else None

    def blob(self, data: bytes) -> str:
        return self.put("blob", data)

    def tree(self, entries: dict[str, tuple[str, str]]) -> str:
        """Write a tree from {name: (mode, sha)}, ordered as git orders it."""
        def order(name: str) -> bytes:
            # git compares a directory's name as if it ended with "/".
            return (name + ("/" if git_mode(entries[name][0]) == TREE_MODE else "")).encode()

        data = b"".join(
            f"{git_mode(entries[name][0])} {name}\0".encode() + bytes.fromhex(entries[name][1])
            for name in sorted(entries, key=order)
        )
        return self.put("tree", data)

    def entries(self, tree_sha: str) -> list[tuple[str, str, str]]:
        """(mode, name, sha) of each entry of a tree, in stored order."""
        data, out, pos = self.get(tree_sha, "tree"), [], 0
        while pos < len(data):
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            mode, name = data[pos:space].decode(), data[space + 1:nul].decode()
            out.append((mode, name, data[nul + 1:nul + 21].hex()))
            pos = nul + 21
        return out

    def flatten(self, tree_sha: str, prefix: str = "") -> dict[str, tuple[str, str]]:
        """{path: (mode, sha)} of every non-tree entry below a tree."""
        flat: dict[str, tuple[str, str]] = {}
        for mode, name, sha in self.entries(tree_sha):
            if mode == TREE_MODE:
                flat.update(self.flatten(sha, f"{prefix}{name}/"))
            else:
                flat[prefix + name] = (mode, sha)
        return flat

    def tree_from_flat(self, flat: dict[str, tuple[str, str]]) -> str:
        """Write the nested trees for {path: (mode, sha)}; returns the root tree's SHA."""
        here: dict[str, tuple[str, str]] = {}
        below: dict[str, dict[str, tuple[str, str]]] = {}
        for path, entry in flat.items():
            head, _, rest = path.partition("/")
            if rest:
                below.setdefault(head, {})[rest] = entry
            else:
                here[head] = entry
        for name, sub in below.items():
            here[name] = (TREE_MODE, self.tree_from_flat(sub))
        return self.tree(here)

    def commit(self, tree: str, parents: list[str], message: str,
               author: Person, committer: Person) -> str:
        lines = [f"tree {tree}", *(f"parent {p}" for p in parents),
                 f"author {author.line()}", f"committer {committer.line()}"]
        return self.put("commit", ("\n".join(lines) + "\n\n" + message).encode())

    def read_commit(self, sha: str) -> dict:
        """tree, parents, author, committer (Person) and message of a commit."""
        header, _, message = self.get(sha, "commit").decode().partition("\n\n")
        out: dict = {"parents": [], "message": message}
        for line in header.splitlines():
            key, _, value = line.partition(" ")
            if key == "parent":
                out["parents"].append(value)
            elif key in ("author", "committer"):
                who, _, stamp = value.rpartition("> ")
                name, _, email = who.partition(" <")
                out[key] = Person(name, email, int(stamp.split()[0]))
            else:
                out[key] = value
        return out

    def files(self, sha: str) -> dict[str, tuple[str, bytes]]:
        """{path: (mode, content)} of a commit's or tree's files (a submodule gives its SHA)."""
        tree = self.read_commit(sha)["tree"] if self.kind(sha) == "commit" else sha
        return {
            path: (mode, self.get(obj) if mode != "160000" else obj.encode())
            for path, (mode, obj) in self.flatten(tree).items()
        }

    # refs

    def set_ref(self, name: str, sha: str) -> None:
        """Point `refs/...` at a SHA."""
        self.refs[name] = sha
        if self.path is not None:
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(sha + "\n")

    def delete_ref(self, name: str) -> None:
        del self.refs[name]
        if self.path is not None:
            (self.path / name).unlink(missing_ok=True)

    def resolve(self, refish: str) -> str | None:
        """The commit a SHA, branch, tag or full ref name names; None when nothing does."""
        if _SHA.match(refish):
            return refish if self.kind(refish) == "commit" else None
        for name in (refish, f"refs/heads/{refish}", f"refs/tags/{refish}"):
            if name in self.refs:
                return self.refs[name]
        return None

    def commit_files(self, files: dict[str, bytes | tuple[str, bytes] | None],
                     parent: str | None, message: str, who: Person) -> str:
        """A commit on `parent` that writes (or, for None, deletes) the given paths."""
        flat = self.flatten(self.read_commit(parent)["tree"]) if parent else {}
        for path, content in files.items():
            if content is None:
                flat.pop(path, None)
            else:
                mode, data = content if isinstance(content, tuple) else ("100644", content)
                flat[path] = (mode, self.blob(data))
        return self.commit(self.tree_from_flat(flat), [parent] if parent else [],
                           message, who, who)
