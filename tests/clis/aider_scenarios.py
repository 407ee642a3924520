"""The scripted model's answers for the real aider (0.86.2), which offers the model no tools:
its edits are SEARCH/REPLACE blocks in the answer's text (the `diff` edit format of its
Claude models), under the file's name.

An answer that edits files not yet in the chat makes aider add them and ask again with their
contents; the second answer's blocks are applied, then the shell commands it gives (```bash)
run: aider answers each of its questions with the default, yes (see sandbox/agents.py,
AiderAdapter). A command is the only way aider has to delete a file.
"""

from __future__ import annotations

from pathlib import Path

from tests.clis.scenarios import PROMPT
from tests.fakes.model_anthropic import Turn, Usage

__all__ = ["FINAL", "PROMPT", "offline_model_info", "the_edits"]

FINAL = "I added the module, updated the README greeting and removed old.txt."
EDITS = (f"{FINAL}\n\n"
         "src/new_module.py\n```python\n<<<<<<< SEARCH\n=======\nVALUE = 42\n>>>>>>> REPLACE\n"
         "```\n\n"
         "README.md\n```\n<<<<<<< SEARCH\nHello.\n=======\nHello, edited.\n>>>>>>> REPLACE\n"
         "```\n\n"
         "```bash\nrm old.txt\n```\n")


def the_edits() -> list[Turn]:
    """Create and edit through edit blocks (asked twice: the files join the chat first), and
    delete through a shell command."""
    return [Turn(text=EDITS, usage=Usage(input_tokens=1200, output_tokens=60,
                                         cache_creation_input_tokens=900)),
            Turn(text=EDITS, usage=Usage(input_tokens=1500, output_tokens=60,
                                         cache_read_input_tokens=2000))]


def offline_model_info(home: Path) -> None:
    """aider's cache of litellm's model list, fresh and all but empty (an empty one is fetched
    again): aider then keeps to the list litellm ships instead of fetching it (two lines of
    its output when offline)."""
    cache = home / ".aider" / "caches" / "model_prices_and_context_window.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text('{"sample_spec": {}}')
