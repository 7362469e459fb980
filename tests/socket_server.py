"""A loopback WebSocket vendor for the tests: the real SDK's ``realtime.connect()`` / ``responses.connect()`` over
a real WebSocket on 127.0.0.1 (``websockets``' own server, in a thread).

It sends ``greeting`` when a client connects, then answers each event the client sends with the events ``reply``
returns for it. ``paths`` records each handshake's path (with its query), ``received`` every client event.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Iterable

from websockets.sync.server import serve


class SocketServer:
    def __init__(self, greeting: Iterable[dict] = (),
                 reply: Callable[[dict], Iterable[dict]] = lambda event: ()) -> None:
        self.greeting = list(greeting)
        self.reply = reply
        self.paths: list[str] = []
        self.received: list[dict] = []

    def _handle(self, connection: Any) -> None:
        self.paths.append(connection.request.path)
        for event in self.greeting:
            connection.send(json.dumps(event))
        for message in connection:
            event = json.loads(message)
            self.received.append(event)
            for answer in self.reply(event):
                connection.send(json.dumps(answer))

    def __enter__(self) -> "SocketServer":
        self._server = serve(self._handle, "127.0.0.1", 0)
        port = self._server.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"  # the SDKs derive ws://127.0.0.1:port/v1/... from it
        self._thread = threading.Thread(target=self._server.serve_forever, name="socket-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
