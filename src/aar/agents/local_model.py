"""A packaged GGUF model served by llama.cpp's OpenAI-compatible server, on loopback.

``LocalModelServer("qwen0.5b")`` starts ``python -m llama_cpp.server`` (from the optional
``llama-cpp-python[server]`` install, ``pip install -e '.[local]'``) on a free port of
127.0.0.1 with the model's own chat template, waits until it answers, and stops it on
:meth:`stop` (the server also dies with its parent: it gets SIGTERM when the process that
started it exits, crashed or killed). The researcher loop talks to it through the
``openai`` backend: each reply is constrained by the JSON schema of one tool call (the
server turns it into a grammar), then parsed from the model's text.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from aar.errors import AarError

LOCAL_MODELS = ("qwen0.5b", "qwen1.5b")
DEFAULT_LOCAL_MODEL = "qwen1.5b"  # the 0.5B loops on malformed calls in research runs (measured)
DEFAULT_CONTEXT = 8192  # tokens of the model's window (Qwen2.5 supports 32k; CPU prompts are slow)
INSTALL_HINT = ("the local backend needs llama-cpp-python with its server: run "
                "`.venv/bin/pip install -e '.[local]'` (it builds llama.cpp, ~5 min on 2 cores)")


def llama_missing() -> str | None:
    """Why the local server cannot start here (None: it can)."""
    for module in ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context",
                   "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return f"{INSTALL_HINT} (module {module} is missing)"
    return None


def check_local_model(model: str) -> None:
    if model not in LOCAL_MODELS:
        raise AarError(f"unknown local model {model!r}; choose one of: "
                       f"{', '.join(LOCAL_MODELS)} (or pass --base-url for your own server)")
    why = llama_missing()
    if why is not None:
        raise AarError(why)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child before exec (Linux: PR_SET_PDEATHSIG)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class LocalModelServer:
    """One llama.cpp server process on a packaged model; a context manager."""

    def __init__(self, model: str = DEFAULT_LOCAL_MODEL, *, context: int = DEFAULT_CONTEXT,
                 threads: int | None = None, log_path: Path | None = None,
                 startup_s: float = 300.0) -> None:
        check_local_model(model)
        self.model = model
        self.context = context
        self.threads = threads or os.cpu_count() or 1
        self.log_path = log_path
        self.startup_s = startup_s
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server; returns its base URL (``http://127.0.0.1:PORT/v1``)."""
        from aar.models.causal_lm import lm_gguf

        gguf = lm_gguf(self.model)
        port = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
               "--model_alias", self.model, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", str(self.context), "--n_threads", str(self.threads),
               "--n_threads_batch", str(self.threads)]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=_die_with_parent)
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise AarError(f"the local model server ({self.model}) exited with code "
                               f"{self._proc.returncode} while starting{where}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=2.0).status_code == 200:
                    return self.url
            time.sleep(0.5)
        self.stop()
        raise AarError(f"the local model server ({self.model}) did not answer within "
                       f"{self.startup_s:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
