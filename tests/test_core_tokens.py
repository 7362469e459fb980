"""Offline token counting: exact tiktoken counts from bundled, hash-checked data, and honest estimates."""

from __future__ import annotations

import threading
import time

from aicost import integrations, tokens


def test_counts_are_tiktokens_exact_counts_offline():
    # 7 tokens in both o200k_base (gpt-4o) and cl100k_base (gpt-3.5/4), per tiktoken.
    assert tokens.count_text("What is the capital of France?", "gpt-4o") == tokens.TokenCount(7, True)
    assert tokens.count_text("What is the capital of France?", "gpt-3.5-turbo") == tokens.TokenCount(7, True)
    assert tokens.encoding_name_for("gpt-4o-2024-08-06") == "o200k_base"
    assert tokens.encoding_name_for("gpt-35-turbo") == "cl100k_base"


def test_anthropic_counts_are_flagged_as_estimates():
    count = tokens.count_text("What is the capital of France?", "claude-3-5-haiku-20241022",
                              own_tokenizer=integrations.endpoint("anthropic.messages.create").shape
                              .tokenizer_is_exact("anthropic"))
    assert count.tokens > 0 and count.exact is False


def test_chat_request_accounting_matches_the_vendor():
    # openai-chat-nonstream-001 (recorded): this request was billed prompt_tokens=13 without a name field.
    counted = tokens.count_request_input(
        {"messages": [{"role": "user", "content": "What is the capital of France?"}]}, "gpt-4o-2024-08-06", "openai",
        integrations.endpoint("openai.chat.completions.create").shape)
    assert counted == tokens.TokenCount(13, True)


def test_concurrent_first_use_loads_each_encoding_once(monkeypatch):
    monkeypatch.setattr(tokens, "_encodings", {})
    loads = []
    real = tokens._from_bpe_openai

    def counting(name):
        loads.append(name)
        time.sleep(0.05)
        return real(name)

    monkeypatch.setattr(tokens, "_from_bpe_openai", counting)
    threads = [threading.Thread(target=tokens.count_text, args=("hello world", "gpt-4o")) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert loads == ["o200k_base"]


def test_without_local_data_the_count_is_an_estimate(monkeypatch):
    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setattr(tokens, "_from_bpe_openai", lambda name: None)
    monkeypatch.setattr(tokens, "_from_tiktoken_cache", lambda name: None)
    assert tokens.count_text("x" * 40, "gpt-4o") == tokens.TokenCount(10, False)
