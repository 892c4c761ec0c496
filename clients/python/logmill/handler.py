"""``LogmillHandler``: Python's ``logging`` into logmill through a :class:`~logmill.Client`.

The caller's thread formats the message (``msg % args``: the arguments may change after the
call) and the traceback of ``exc_info``, and appends one tuple to the client's queue; the
sender thread maps the ``LogRecord`` to logmill's record, ``extra=`` attributes to fields.
"""

import logging
import traceback

from .client import Client, Refused

__all__ = ["LogmillHandler"]


class LogmillHandler(logging.Handler):
    """``logging.getLogger().addHandler(LogmillHandler("127.0.0.1:4020", app="billing"))``.

    Keyword arguments other than ``client`` and ``level`` go to :class:`~logmill.Client`;
    pass ``client=`` to share one client. ``close()`` closes the client it made.
    """

    def __init__(self, address="127.0.0.1:4020", *, client=None, level=logging.NOTSET,
                 **options):
        super().__init__(level)
        self._own = client is None
        self.client = client if client is not None else Client(address, **options)
        self._put = self.client._put

    def handle(self, record):
        # No handler lock: emit only appends to a deque, which is thread-safe by itself.
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record):
        try:
            message = record.getMessage() if record.args else str(record.msg)
            stack = ""
            if record.exc_info:
                stack = "".join(traceback.format_exception(*record.exc_info))
            elif record.exc_text:
                stack = record.exc_text
            if record.stack_info:
                stack = f"{stack}{record.stack_info}" if stack else record.stack_info
            self._put((record, message, stack))
        except Exception:
            self.handleError(record)

    def flush(self, timeout=None):
        """Waits for the acks, at most ``timeout`` or the client's ``close_timeout``: logging
        calls this at exit, which must end even when the server is away. A refusal was already
        reported (stderr, and ``handleError`` at each record), so it is not raised again here."""
        try:
            self.client.flush(self.client._close_timeout if timeout is None else timeout)
        except Refused:
            pass

    def close(self):
        if self._own:
            self.client.close()
        super().close()
