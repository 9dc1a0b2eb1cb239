"""An evaluation server in this process: uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

from aar.errors import AarError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """``with LiveServer(admin_token=t) as srv: srv.url`` serves the API until the block
    ends. The admin token is fixed by the caller, so that a resumed run can use it again."""

    def __init__(self, *, admin_token: str, datasets: tuple[str, ...] = (),
                 db_url: str | None = None, **config: Any) -> None:
        self.admin_token = admin_token
        self._datasets = datasets
        self._db_url = db_url
        self._config = config
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._app: Any = None

    def start(self) -> LiveServer:
        import uvicorn

        from aar.server.app import create_app
        from aar.server.config import ServerConfig

        extra: dict[str, Any] = dict(self._config)
        if self._db_url:
            extra["db_url"] = self._db_url
        self._app = create_app(ServerConfig(datasets=self._datasets,
                                            admin_token=self.admin_token, **extra))
        port = free_port()
        self._server = uvicorn.Server(uvicorn.Config(
            self._app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        self._thread = threading.Thread(target=self._server.run, name="aar-server",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise AarError("the evaluation server did not start on 127.0.0.1")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        if self._app is not None:
            self._app.state.db.dispose()
        self._server = self._thread = self._app = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
