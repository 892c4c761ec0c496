"""logmill's Python client: the native protocol with acks, reconnect and a local spool.

    import logging, logmill
    logging.getLogger().addHandler(logmill.LogmillHandler("127.0.0.1:4020", app="billing"))

See ``client.py`` for the threads and the order of records, ``wire.py`` for the bytes,
``spool.py`` for the files.
"""

from .client import Client, LogmillError, Refused
from .handler import LogmillHandler

__all__ = ["Client", "LogmillError", "LogmillHandler", "Refused"]
__version__ = "0.1.0"
