"""Real-time serving with KServe: the predictor (model.py), `kfts serve` (server.py), its memory budget
(admission.py) and the CLI commands `serve` and `deploy render` (commands.py). Importing this package does not
import kserve."""

SHOWN = 200  # characters of a client's value or id that an answer or a log line shows


def clip(text: str, limit: int = SHOWN) -> str:
    """`text` cut to `limit` characters, "..." saying it was: what a client sends may be as long as its body."""
    return text if len(text) <= limit else text[:limit] + "..."
