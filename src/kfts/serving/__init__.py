"""Real-time serving with KServe: the predictor (model.py), its request decoding and answer encoding
(decoding.py), its model worker and batching (batching.py), `kfts serve` (server.py), its memory budget
(admission.py) and the CLI commands `serve` and `deploy render` (commands.py). Importing this package does not
import kserve."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

SHOWN = 200  # characters of a client's value or id that an answer or a log line shows


def clip(text: str, limit: int = SHOWN) -> str:
    """`text` cut to `limit` characters, "..." saying it was: what a client sends may be as long as its body."""
    return text if len(text) <= limit else text[:limit] + "..."


# One thread decodes requests and writes answers (the model has its own, kfts.serving.batching.Worker): more
# would not run faster on the cores the model leaves, and would take the interpreter from the event loop, which
# must keep answering health probes.
CODEC = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfts-codec")


async def off_loop(fn, *args):
    """fn(*args) on the CODEC thread."""
    return await asyncio.get_running_loop().run_in_executor(CODEC, fn, *args)
