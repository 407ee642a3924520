"""The outcome's diff: against the base when it can be read, secrets masked, binaries named."""

from __future__ import annotations

import base64

from bot.web.changes import files_html

KEY = ("-----BEGIN RSA PRIVATE KEY-----\n"
       + "MIIEowIBAAKCAQEAx1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0\n" * 4
       + "-----END RSA PRIVATE KEY-----\n")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_diff_against_the_base_with_secrets_masked_across_lines() -> None:
    base = {"app.py": b"a = 1\nb = 2\n", "old.txt": b"gone\n"}

    async def read(path: str) -> bytes | None:
        return base.get(path)

    html = await files_html({"changes": [
        {"path": "app.py", "mode": "100644", "content_b64": b64(b"a = 1\nb = 3\n")},
        {"path": "key.pem", "mode": "100644", "content_b64": b64(KEY.encode())},
        {"path": "old.txt", "deleted": True},
        {"path": "logo.png", "mode": "100644", "content_b64": b64(b"\x89PNG\0\0\0")},
    ]}, read)
    assert "Changed files (4)" in html
    assert '<span class="del">-b = 2</span>' in html and '<span class="add">+b = 3</span>' in html
    assert "MIIEowIBAAKCAQEA" not in html and "[REDACTED:private_key]" in html
    assert '<span class="tag">deleted</span>' in html and '<span class="del">-gone</span>' in html
    assert '<span class="tag">added</span>' in html  # key.pem: not in the base
    assert "Binary or large file; not shown." in html


async def test_without_the_base_the_new_side_is_shown_as_changed() -> None:
    async def unreachable(path: str) -> bytes | None:
        raise ConnectionError("GitHub is away")

    html = await files_html({"changes": [
        {"path": "app.py", "mode": "100644", "content_b64": b64(b"x = 1\n")}]}, unreachable)
    assert '<span class="tag">changed</span>' in html and "+x = 1" in html
    assert await files_html({"changes": []}, None) == ""
