"""Each served model's tokenizer, loaded off the request path once a worker has cached the model.

An API process that starts before any worker has cached a model checks prompts approximately until the model's
files appear (``service.token_budget``). ``ModelFilesWatcher`` looks for them every ``interval`` seconds, and
when they appear runs ``warm(name)``: one submit's checks on a small request, which loads the tokenizer and chat
template and takes the first-time work out of the first real submit. A submit that finds the files first still
loads them itself (one thread does; the others wait for it), so the exact check starts as soon as the files are
there either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


class ModelFilesWatcher(threading.Thread):
    """``warm(name)`` returns True once the model's files were there to check with; False: look again later."""

    def __init__(self, names: Iterable[str], warm: Callable[[str], bool], *, interval: float = 1.0) -> None:
        super().__init__(name="faithaudit-model-files", daemon=True)
        self._pending, self._warm, self._interval = list(names), warm, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while self._pending and not self._stop_event.wait(self._interval):
            for name in list(self._pending):
                try:
                    if self._warm(name):
                        self._pending.remove(name)
                        log.info("model %s: tokenizer loaded, submits are checked exactly", name)
                except Exception as exc:  # an unusable model is each submit's 422 to give; stop looking
                    self._pending.remove(name)
                    log.warning("model %s: its files cannot be used for the submit checks: %s", name, exc)

    @property
    def pending(self) -> list[str]:
        return list(self._pending)

    def stop(self) -> None:
        self._stop_event.set()
