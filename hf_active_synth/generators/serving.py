"""A local OpenAI-compatible server for `EndpointTextGenerator`: `transformers serve` in a subprocess.

On a machine without vLLM or TGI, `transformers serve` (`pip install "transformers[serving]"`) serves any local model
folder on `/v1/chat/completions`. `LocalTransformersServer` starts it on a free port of 127.0.0.1, waits until
`/health` answers, and stops it on `close()` (or at the end of a `with` block). The benchmark
`benchmarks/bench_endpoint_generation.py` and the tests use it; so can a user trying the endpoint path on one machine.
Notes: `transformers serve` samples only where the model's `generation_config.json` says `do_sample: true` (it maps
`temperature` and `top_p`, not `do_sample`), and it honours each request's `seed`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["LocalTransformersServer"]

# `transformers serve` as this interpreter runs it (the console script is not always on PATH, e.g. in a venv).
_SERVE = "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; sys.exit(main())"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalTransformersServer:
    """`transformers serve MODEL` on `host:port`, as a context manager.

    Args:
        model (`str` or `os.PathLike`, *optional*): A local model folder (with a chat template) or a Hub id, loaded
            at start-up; every request must name it: pass `server.model_id` as `EndpointTextGenerator(model=...)`.
            `None` serves whatever model a request names (a local folder or a Hub id), loaded on its first request.
        host (`str`, defaults to `"127.0.0.1"`): Listen address.
        port (`int`, *optional*): Listen port; default: a free one.
        continuous_batching (`bool`, defaults to False): `--continuous-batching` (batches concurrent requests).
        device (`str`, defaults to `"auto"`): `--device`.
        extra_args (`Sequence[str]`, *optional*): More `transformers serve` flags.
        env (`Mapping`, *optional*): Extra environment variables of the server process. A local folder is served
            with `HF_HUB_OFFLINE=1` unless `env` says otherwise.
        startup_timeout (`float`, defaults to 180): Seconds to wait for `/health`.

    Example:

    ```python
    >>> with LocalTransformersServer("path/to/model") as server:
    ...     generator = EndpointTextGenerator(server.url, server.model_id)
    ...     candidates = generator.generate(request)
    ```
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        continuous_batching: bool = False,
        device: str = "auto",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 180.0,
    ):
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be > 0 seconds, got {startup_timeout}.")
        self.model = model
        self.host = host
        self.port = port
        self.continuous_batching = continuous_batching
        self.device = device
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout

    @property
    def model_id(self) -> str:
        """The model name requests must carry (the server is pinned to it)."""
        if self.model is None:
            raise ValueError("This server is pinned to no model: requests name the model folder or Hub id to load.")
        return str(self.model)

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        if not hasattr(self, "port_"):
            raise RuntimeError("The server is not started: call start() or use it as a context manager.")
        return f"http://{self.host}:{self.port_}"

    def start(self, wait: bool = True) -> LocalTransformersServer:
        """Starts the server and (with `wait`) waits until `/health` answers; raises with the server's log if it does
        not. `wait=False` returns at once: do other work while it imports, then call `wait_until_healthy()`."""
        if hasattr(self, "process_"):
            return self.wait_until_healthy() if wait else self
        self.port_ = self.port or _free_port(self.host)
        command = [sys.executable, "-c", _SERVE, "serve"] + ([str(self.model)] if self.model is not None else [])
        command += ["--host", self.host, "--port", str(self.port_), "--device", self.device, "--log-level", "warning"]
        if self.model is None:
            command += ["--model-timeout", str(10**6)]  # keep every model it loaded, for the server's lifetime
        if self.continuous_batching:
            command.append("--continuous-batching")
        command += self.extra_args
        env = dict(os.environ)
        if self.model is not None and Path(self.model).is_dir():
            env.setdefault("HF_HUB_OFFLINE", "1")
        env.update(self.env)
        self.log_ = tempfile.TemporaryFile(mode="w+")
        self.process_ = subprocess.Popen(command, env=env, stdout=self.log_, stderr=subprocess.STDOUT)
        self.started_at_ = time.monotonic()
        return self.wait_until_healthy() if wait else self

    def wait_until_healthy(self) -> LocalTransformersServer:
        """Waits until `/health` answers (at most `startup_timeout` seconds after the start)."""
        if not hasattr(self, "process_"):
            raise RuntimeError("The server is not started: call start() first.")
        deadline = self.started_at_ + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process_.poll() is not None:
                break
            if self._healthy():
                return self
            time.sleep(0.2)
        log = self._log_tail()
        self.close()
        raise RuntimeError(
            f"`transformers serve {self.model or ''}` did not become healthy within {self.startup_timeout:.0f} s "
            f"(is `transformers[serving]` installed?). Its log ends with:\n{log}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False  # not listening yet

    def _log_tail(self, chars: int = 4000) -> str:
        self.log_.flush()
        self.log_.seek(0)
        return self.log_.read()[-chars:]

    def close(self) -> None:
        """Stops the server (terminate, then kill after 10 s)."""
        process = self.__dict__.pop("process_", None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log = self.__dict__.pop("log_", None)
        if log is not None:
            log.close()

    def __enter__(self) -> LocalTransformersServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()
