"""How the local engine is started and fronted, without starting it (the engine itself: test_vllm_engine.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from model_code import sagemaker_routes, vllm_server
from model_code.sagemaker_routes import SageMakerRuntimeRoutes
from stacks.serving import serving_properties

# -- the command line ---------------------------------------------------------------------------------------------


def test_the_engine_command_is_vllms_api_server_with_serving_properties_engine_args(tmp_path: Path) -> None:
    # Given the committed serving.properties
    properties = serving_properties.load()

    # When the local engine's command is built
    command = vllm_server.engine_command(
        tmp_path, host="127.0.0.1", port=8123, properties=properties, python=Path("/serve/bin/python")
    )

    # Then it runs vLLM's OpenAI server module (not `vllm serve`) in the serving venv, with LMI's mapping
    assert command[:3] == ["/serve/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    text = " ".join(command)
    assert f"--model {tmp_path}" in text and "--port 8123" in text
    assert f"--max-num-seqs {properties['option.max_rolling_batch_size']}" in text
    assert f"--max-model-len {properties['option.max_model_len']}" in text
    assert "--limit-mm-per-prompt " + properties["option.limit_mm_per_prompt"] in text
    assert "--enable-prefix-caching" in text and "--dtype float32" in text
    assert "--mm-processor-cache-gb " + properties["option.mm_processor_cache_gb"] in text
    assert "--middleware model_code.sagemaker_routes.SageMakerRuntimeRoutes" in text
    # GPU-only and LMI-only keys stay out; eager mode unless compilation is asked for
    assert "gpu-memory-utilization" not in text and "model-loading-timeout" not in text
    assert "--enforce-eager" in command
    compiled = vllm_server.engine_command(
        tmp_path, host="h", port=1, properties=properties, python=Path("p"), compile_model=True
    )
    assert "--enforce-eager" not in compiled


def test_boolean_engine_args_are_spelled_as_lmi_spells_them() -> None:
    assert vllm_server.cli_args({"enable_prefix_caching": True, "enforce_eager": False, "max_num_seqs": "4"}) == [
        "--enable-prefix-caching",
        "--no-enforce-eager",
        "--max-num-seqs",
        "4",
    ]


def test_a_directory_without_a_model_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        vllm_server.VllmServer(tmp_path)


def test_cli_refuses_bad_input_and_a_missing_serving_venv_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        vllm_server.main(["--model-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "is not a saved model" in capsys.readouterr().err

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit):
        vllm_server.main(["--model-dir", str(tmp_path), "--port", "0"])
    assert "--port must be within" in capsys.readouterr().err

    monkeypatch.setattr(vllm_server, "SERVE_PYTHON", tmp_path / "absent" / "python")
    assert vllm_server.main(["--model-dir", str(tmp_path)]) == 2
    assert "make setup" in capsys.readouterr().err


# -- SageMaker Runtime's route (an ASGI middleware in front of vLLM) -------------------------------------------


class _Container:
    """Stands in for vLLM's ASGI app: records the path it was asked for, answers with a fixed status and body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body, self.paths = status, body, []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        payload = json.dumps(self.body).encode()
        await send({"type": "http.response.start", "status": self.status, "headers": [(b"x-test", b"1")]})
        await send({"type": "http.response.body", "body": payload[:5], "more_body": True})
        await send({"type": "http.response.body", "body": payload[5:], "more_body": False})


def _call(app: Any, path: str) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "POST", "path": path, "raw_path": path.encode()}, receive, send))
    headers = dict(sent[0]["headers"])
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], headers, json.loads(body)


def test_invoke_endpoint_path_reaches_the_containers_invocations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sagemaker_routes.ENDPOINT_NAME_VARIABLE, raising=False)
    container = _Container(200, {"choices": []})

    status, headers, body = _call(SageMakerRuntimeRoutes(container), "/endpoints/any-name/invocations")

    assert (status, body, container.paths) == (200, {"choices": []}, ["/invocations"])
    assert headers[b"x-amzn-invoked-production-variant"] == b"AllTraffic"


def test_a_container_error_becomes_sagemakers_model_error_with_the_original(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(sagemaker_routes.ENDPOINT_NAME_VARIABLE, raising=False)
    container = _Container(400, {"error": {"message": "bad image"}})

    status, headers, body = _call(SageMakerRuntimeRoutes(container), "/endpoints/ep/invocations")

    assert status == 424 and headers[b"x-amzn-errortype"] == b"ModelError"
    assert body["OriginalStatusCode"] == 400 and json.loads(body["OriginalMessage"]) == container.body
    assert body["ErrorCode"] == "CLIENT_ERROR_FROM_MODEL"


def test_other_endpoint_names_are_not_found_and_other_paths_pass_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(sagemaker_routes.ENDPOINT_NAME_VARIABLE, "photo-labeler")
    container = _Container(404, {"detail": "Not Found"})
    app = SageMakerRuntimeRoutes(container)

    status, headers, body = _call(app, "/endpoints/other/invocations")
    assert (status, headers[b"x-amzn-errortype"]) == (400, b"ValidationError")
    assert "Endpoint other of account" in body["message"] and container.paths == []

    status, _, body = _call(app, "/v1/models")
    assert (status, body, container.paths) == (404, {"detail": "Not Found"}, ["/v1/models"])
