"""How the agent reaches the outside: the gateway as its model provider and as its proxy."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

# Every variable through which a CLI could take a provider key or endpoint. Whatever the
# runner inherited under these names is dropped, and the gateway's values are set instead,
# so no real key can reach the agent even when an operator's environment leaks one in.
PROVIDER_VARIABLES = frozenset({
    "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN",
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "CODEX_API_KEY",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
})


def provider_env(gateway_url: str, token: str) -> dict[str, str]:
    """Point every agent CLI's Anthropic and OpenAI clients at the gateway, with the run's
    gateway credential where each expects its key; the gateway swaps in the real key."""
    base = gateway_url.rstrip("/")
    return {
        # Claude Code, and Anthropic models in OpenCode and aider
        "ANTHROPIC_BASE_URL": f"{base}/anthropic",
        "ANTHROPIC_API_KEY": token,
        # Codex, OpenAI models in OpenCode; aider (litellm) reads OPENAI_API_BASE
        "OPENAI_BASE_URL": f"{base}/openai/v1",
        "OPENAI_API_BASE": f"{base}/openai/v1",
        "OPENAI_API_KEY": token,
        "CODEX_API_KEY": token,
    }


def proxy_env(proxy_url: str, token: str, gateway_url: str | None) -> dict[str, str]:
    """Send everything else through the gateway's egress proxy, authenticated as this run.

    Both spellings are set: curl and Python read the lower-case ones, Node and Go the upper.
    """
    parts = urlsplit(proxy_url)
    with_credential = f"{parts.scheme}://agentbot:{quote(token, safe='')}@{parts.netloc}"
    direct = ",".join(sorted({h for h in (parts.hostname, urlsplit(gateway_url or "").hostname)
                              if h}))
    env = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = env[name.lower()] = with_credential
    env["NO_PROXY"] = env["no_proxy"] = direct
    return env
