"""The sandbox executor's LLM back-end for any OpenAI-compatible /v1/chat/completions endpoint
(vLLM, Ollama, llama.cpp server); API key from `SANDBOX_LLM_API_KEY`.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from td_pipeline.sandbox.llm import LlmAnswer, LlmFailure, LlmRequest

API_KEY_ENV = "SANDBOX_LLM_API_KEY"

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tasks": {"type": "array", "items": {"type": "object"}}},
    "required": ["tasks"],
}


class OpenAICompatibleLlm:
    """Chat completions over HTTP with the standard library. Asks for a JSON-schema response
    and falls back to a plain JSON object, then to none, for servers that refuse it."""

    def __init__(self, base_url: str, model: str, timeout_seconds: float = 120.0) -> None:
        self.vllm_url, self.vllm_model = base_url, model
        self._url = base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/v1") else "/v1")
        self._url += "/chat/completions"
        self._model = model
        self._timeout = timeout_seconds

    def answer(self, request: LlmRequest) -> LlmAnswer:
        formats: list[dict[str, Any] | None] = [
            {"type": "json_schema", "json_schema": {"name": "tasks", "schema": ANSWER_SCHEMA}},
            {"type": "json_object"},
            None,
        ]
        last_error = ""
        for response_format in formats:
            body: dict[str, Any] = {
                "model": request.model or self._model,
                "messages": [{"role": "user", "content": request.prompt}],
                "temperature": 0.2,
            }
            if response_format is not None:
                body["response_format"] = response_format
            try:
                reply = self._post(body)
            except urllib.error.HTTPError as error:
                last_error = f"HTTP {error.code} from {self._url}"
                if error.code == 400:
                    continue  # this server does not support that response format
                raise LlmFailure(last_error) from error
            except (urllib.error.URLError, TimeoutError, OSError) as error:
                raise LlmFailure(f"LLM endpoint {self._url} unreachable: {error}") from error
            try:
                content = reply["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError) as error:
                raise LlmFailure("LLM reply has no choices[0].message.content") from error
            tokens = int(reply.get("usage", {}).get("completion_tokens", 0) or 0)
            return LlmAnswer(
                content=content, model=str(reply.get("model", self._model)), tokens=tokens
            )
        raise LlmFailure(last_error)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if api_key := os.environ.get(API_KEY_ENV):
            headers["Authorization"] = f"Bearer {api_key}"
        http_request = urllib.request.Request(
            self._url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(http_request, timeout=self._timeout) as response:
            reply: dict[str, Any] = json.loads(response.read())
            return reply
