"""The vendor-neutral request contract, end to end: budgets and policies change Gemini's and Bedrock's requests the
way they change OpenAI's, through each endpoint's ``RequestShape``, and what the loopback server receives is the
changed request (real google-genai and boto3 SDKs over real HTTP). Also: integrations are found by looking, and a
Bedrock call through Anthropic's own Bedrock client is one costed span, not two."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from aicost import integrations
from aicost.budget import Budget, BudgetExceeded, Policy, configure_budgets, disable_budgets
from aicost.integrations.bedrock import InvokeShape
from aicost.integrations.gemini import GeminiShape
from vendor_server import Reply, load_recording

genai = pytest.importorskip("google.genai")
boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from google.genai import types  # noqa: E402


@pytest.fixture
def budgets():
    yield configure_budgets
    disable_budgets()


def _gemini(server):
    return genai.Client(api_key="test", http_options=types.HttpOptions(
        base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1)))


def _bedrock(server):
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server.url, aws_access_key_id="t",
                        aws_secret_access_key="t", config=Config(retries={"max_attempts": 1}))


def test_integrations_are_found_without_a_list_in_the_core():
    names = {name for name, _ in integrations.available()}
    assert {"openai", "anthropic", "gemini", "bedrock"} <= names
    assert integrations.endpoint("bedrock.converse").shape.model({"modelId": "m"}) == "m"


def test_output_cap_policy_lands_in_gemini_and_bedrock_requests(instrumented, budgets, replay_server):
    budgets(policies=[Policy(max_output_tokens=64)])
    replay_server.enqueue(Reply.from_recording(load_recording("gemini-generatecontent-nonstream-011")),
                          Reply.from_recording(load_recording("gemini-generatecontent-nonstream-011")),
                          Reply.from_recording(load_recording("bedrock-converse-nonstream-001")),
                          Reply.from_recording(load_recording("bedrock-invokemodel-nonstream-004")))
    gemini = _gemini(replay_server)
    gemini.models.generate_content(model="gemini-2.5-flash", contents="hi")
    gemini.models.generate_content(model="gemini-2.5-flash", contents="hi",
                                   config=types.GenerateContentConfig(max_output_tokens=4000, temperature=0.5))
    bedrock = _bedrock(replay_server)
    bedrock.converse(modelId="amazon.nova-micro-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}],
                     inferenceConfig={"maxTokens": 4000})
    bedrock.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                         body=json.dumps({"max_tokens": 4000, "messages": [{"role": "user", "content": "hi"}]}))
    bodies = [r.json for r in replay_server.requests]
    assert bodies[0]["generationConfig"]["maxOutputTokens"] == 64
    assert bodies[1]["generationConfig"]["maxOutputTokens"] == 64
    assert bodies[1]["generationConfig"]["temperature"] == 0.5  # the rest of the config is kept
    assert bodies[2]["inferenceConfig"]["maxTokens"] == 64
    assert bodies[3]["max_tokens"] == 64


def test_output_cap_policy_reads_whole_floats_in_gemini_and_bedrock_requests_and_leaves_other_values(
        instrumented, budgets, replay_server):
    """A cap sent as a whole float is a cap (lowered to an int, or kept when under the policy's: never raised); one
    that is no count is left as the application sent it, and the span says why no cap was applied."""
    budgets(policies=[Policy(max_output_tokens=64)])
    replay_server.enqueue(Reply.from_recording(load_recording("gemini-generatecontent-nonstream-011")),
                          Reply.from_recording(load_recording("bedrock-invokemodel-nonstream-004")),
                          Reply.from_recording(load_recording("bedrock-invokemodel-nonstream-004")))
    gemini = _gemini(replay_server)
    gemini.models.generate_content(model="gemini-2.5-flash", contents="hi", config={"max_output_tokens": 20.0})
    bedrock = _bedrock(replay_server)
    for cap in (4000.0, 4000.5):
        bedrock.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                             body=json.dumps({"max_tokens": cap, "messages": [{"role": "user", "content": "hi"}]}))
    bodies = [r.json for r in replay_server.requests]
    assert bodies[0]["generationConfig"]["maxOutputTokens"] == 20  # the application's lower cap, not raised to 64
    assert bodies[1]["max_tokens"] == 64 and type(bodies[1]["max_tokens"]) is int
    assert bodies[2]["max_tokens"] == 4000.5
    spans = instrumented.aicost_spans()
    assert [s.attributes.get("gen_ai.request.max_tokens") for s in spans] == [20, 64, None]
    assert [s.attributes.get("aicost.policy.cap_not_applied") for s in spans] == [
        None, None, "body max_tokens is sent as a float that is not a positive whole number of tokens"]


def test_budget_downgrade_rewrites_the_bedrock_model_id(instrumented, budgets, replay_server):
    # The target is a Bedrock model id with a catalog price (AWS's table): accepted as the call's vendor prices it,
    # with no price override (before, the check resolved it without a provider, where Bedrock ids do not resolve).
    budgets(budgets=[Budget(limit_usd="0.002", action="downgrade",
                            downgrade_to="anthropic.claude-3-haiku-20240307-v1:0", name="bedrock")])
    replay_server.enqueue(Reply.from_recording(load_recording("bedrock-converse-nonstream-001")))
    _bedrock(replay_server).converse(modelId="anthropic.claude-3-sonnet-20240229-v1:0",
                                     messages=[{"role": "user", "content": [{"text": "hi"}]}],
                                     inferenceConfig={"maxTokens": 1000})
    [request] = replay_server.requests
    assert "claude-3-haiku" in request.path and "sonnet" not in request.path  # modelId is in the URL
    assert "model" not in request.json  # no OpenAI-style key added next to modelId
    [span] = instrumented.aicost_spans()
    assert span.attributes["gen_ai.request.model"] == "anthropic.claude-3-haiku-20240307-v1:0"
    assert span.attributes["aicost.price.known"] is True


def test_downgrade_targets_are_checked_as_their_vendor_prices_them(budgets):
    from aicost.errors import ConfigurationError

    # An unknown Bedrock id is still refused, clearly; a provider budget checks its own vendor's table only.
    with pytest.raises(ConfigurationError, match=r"downgrade_to.*'amazon\.no-such-model-v1:0'.*any vendor"):
        budgets(budgets=[Budget(limit_usd="1", action="downgrade", downgrade_to="amazon.no-such-model-v1:0")])
    with pytest.raises(ConfigurationError, match=r"downgrade_to.*'us\.amazon\.nova-nano-v9:0'.*provider 'aws.bedrock'"):
        budgets(budgets=[Budget(limit_usd="1", action="downgrade", downgrade_to="us.amazon.nova-nano-v9:0",
                                scope="provider", value="aws.bedrock")])
    budgets(budgets=[Budget(limit_usd="1", action="downgrade", downgrade_to="amazon.nova-micro-v1:0",
                            scope="provider", value="aws.bedrock")])


def test_an_openai_call_is_not_downgraded_to_a_bedrock_model(instrumented, budgets, replay_server, openai_client):
    # One global budget, downgrade target priced only on Bedrock: an OpenAI call that does not fit is refused as
    # over budget (not switched to a model id its vendor neither serves nor prices, then refused as unpriced).
    budgets(budgets=[Budget(limit_usd="0.000001", action="downgrade", downgrade_to="amazon.nova-micro-v1:0")])
    with pytest.raises(BudgetExceeded):
        openai_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert replay_server.requests == []


def test_a_budget_refuses_a_gemini_call_by_its_own_output_cap(instrumented, budgets, replay_server):
    budgets(budgets=[Budget(limit_usd="0.001", name="tiny")])
    # gemini-2.5-pro: 10,000 output tokens at $10 / Mtok = $0.10 worst case; without the cap read from the config the
    # reservation would use the model's maximum instead, and still refuse: so check the amount it asked for.
    with pytest.raises(BudgetExceeded) as err:
        _gemini(replay_server).models.generate_content(
            model="gemini-2.5-pro", contents="hi", config={"max_output_tokens": 10_000})
    assert replay_server.requests == []
    assert Decimal("0.10") <= err.value.requested_usd < Decimal("0.11")


def test_shapes_tolerate_what_applications_pass():
    gemini = GeminiShape("max_output_tokens")
    assert gemini.output_cap({"config": {"maxOutputTokens": 10}}) == 10
    assert gemini.output_cap({"config": None}) is None
    kwargs = {"config": {"max_output_tokens": 100}}
    original = kwargs["config"]
    assert gemini.set_output_cap(kwargs, 50) and kwargs["config"]["max_output_tokens"] == 50
    assert original["max_output_tokens"] == 100  # the application's own dict is not changed
    invoke = InvokeShape("max_tokens")
    assert invoke.output_cap({"body": b"not json"}) is None
    assert invoke.set_output_cap({"body": b'{"prompt": "x"}'}, 10) is False  # no cap in the body: left alone
    kwargs = {"body": b'{"textGenerationConfig": {"maxTokenCount": 500}}'}
    assert invoke.set_output_cap(kwargs, 10) and json.loads(kwargs["body"])["textGenerationConfig"]["maxTokenCount"] == 10


def test_every_shape_leaves_a_cap_that_is_no_count_as_the_application_sent_it():
    """The hook contract (any interceptor's ``info.shape.set_output_cap``): a cap sent as a fraction, a bool or
    infinity is not overwritten, not lowered beside and not joined by a second cap; ``unread_cap`` says why,
    without the value. A whole float is a cap, lowered to an int."""
    from aicost.integrations.bedrock import ConverseShape
    from aicost.integrations.gemini import InteractionsShape
    from aicost.integrations.stainless import StainlessShape

    cases = [
        (StainlessShape("max_completion_tokens"), {"max_tokens": 20.5}, "max_tokens"),
        (StainlessShape("max_completion_tokens"), {"max_tokens": True, "max_completion_tokens": 900},
         "max_tokens"),
        (StainlessShape("max_tokens"), {"extra_body": {"max_tokens": float("inf")}}, "max_tokens"),
        (ConverseShape("maxTokens"), {"inferenceConfig": {"maxTokens": 20.5}}, "inferenceConfig.maxTokens"),
        (GeminiShape("max_output_tokens"), {"config": {"max_output_tokens": True}}, "config.max_output_tokens"),
        (InteractionsShape("max_output_tokens"), {"generation_config": {"max_output_tokens": 9.5}},
         "generation_config.max_output_tokens"),
        (InvokeShape("max_tokens"), {"body": json.dumps({"max_tokens": 900, "max_gen_len": 20.5})},
         "body max_gen_len"),
    ]
    for shape, kwargs, param in cases:
        sent = json.dumps(kwargs)
        assert shape.set_output_cap(kwargs, 64) is False, (shape, kwargs)
        assert json.dumps(kwargs) == sent
        assert shape.unread_cap(kwargs).startswith(f"{param} is sent as a ")
    for shape, kwargs in [(StainlessShape("max_completion_tokens"), {"max_tokens": 900.0}),
                          (ConverseShape("maxTokens"), {"inferenceConfig": {"maxTokens": 900.0}})]:
        assert shape.output_cap(kwargs) == 900 and shape.unread_cap(kwargs) is None
        assert shape.set_output_cap(kwargs, 64) and shape.output_cap(kwargs) == 64
        assert "max_completion_tokens" not in kwargs  # no second cap beside the application's


def test_anthropic_bedrock_client_is_one_costed_span(instrumented, replay_server, monkeypatch):
    anthropic = pytest.importorskip("anthropic")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    client = anthropic.AnthropicBedrock(aws_region="us-east-1", base_url=replay_server.url, max_retries=0)
    replay_server.enqueue(Reply.from_recording(load_recording("anthropic-messages-nonstream-001")))
    client.messages.create(model="anthropic.claude-3-5-haiku-20241022-v1:0", max_tokens=16,
                           messages=[{"role": "user", "content": "hi"}])
    assert len(instrumented.cost_spans()) == 1
    assert instrumented.cost_spans()[0].attributes["gen_ai.provider.name"] == "aws.bedrock"


def _through_host(replay_server, host: str, model: str):
    """One chat completion by the openai SDK pointed at another vendor's API (``base_url``): real HTTP to the
    loopback server, which the transport reaches in place of the vendor's host, so the SDK and aicost see the
    vendor's URL. The answer bills 1M input and 1M output tokens of ``model``."""
    import httpx2
    import openai

    class ToLoopback(httpx2.HTTPTransport):
        def handle_request(self, request):
            request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=replay_server.port)
            return super().handle_request(request)

    client = openai.OpenAI(api_key="t", base_url=f"https://{host}/openai/v1", max_retries=0,
                           http_client=httpx2.Client(transport=ToLoopback()))
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "total_tokens": 2_000_000}}
    replay_server.enqueue(Reply.json(body))
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("host, provider, priced", [
    ("api.groq.com", "groq", True),  # the catalog has Groq's own table
    ("api.together.xyz", "together_ai", False),  # it has no Together table: unknown, never another vendor's price
    ("api.openai.com", "openai", True),
])
def test_openai_compatible_hosts_are_named_and_priced_by_their_own_vendor(instrumented, replay_server, host, provider,
                                                                          priced):
    _through_host(replay_server, host, "llama-3.3-70b-versatile")
    [span] = instrumented.aicost_spans()
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == provider and attrs["server.address"] == host
    if provider == "groq":  # Groq's published price: $0.59 / $0.79 per million tokens
        assert Decimal(attrs["aicost.cost.total_usd"]) == Decimal("1.38")
    elif not priced:
        assert attrs["aicost.price.known"] is False and "aicost.cost.total_usd" not in attrs


@pytest.mark.parametrize("host, provider, model", [
    ("api.groq.com", "groq", "gpt-4o-mini"),  # OpenAI's model name: Groq does not sell it at OpenAI's price
    ("api.deepseek.com", "deepseek", "gpt-4o-mini"),
    ("api.x.ai", "x_ai", "gpt-4o"),
    ("api.mistral.ai", "mistral_ai", "claude-3-haiku-20240307"),
    # A vendor prefix is not a resale: Together bills its own price for Mistral's open weights, not Mistral's.
    ("api.together.xyz", "together_ai", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    ("api.together.xyz", "together_ai", "openai/gpt-4o"),
    ("api.fireworks.ai", "fireworks_ai", "accounts/fireworks/models/llama-v3p1-8b-instruct"),
])
def test_a_compatible_host_is_never_billed_at_another_vendors_price(instrumented, replay_server, host, provider,
                                                                    model):
    from aicost import pricing
    from aicost.pricing import engine

    engine.reset_unknown_models()
    _through_host(replay_server, host, model)
    [span] = instrumented.aicost_spans()
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["gen_ai.usage.input_tokens"] == 1_000_000  # the usage is exact; only its price is unknown
    assert attrs["aicost.price.known"] is False
    assert "aicost.cost.total_usd" not in attrs and "gen_ai.usage.cost" not in attrs  # unknown, never $0
    assert "no price for this model from this provider" in attrs["aicost.price.unknown_reason"]
    assert [(u.provider, u.model) for u in pricing.unknown_models()] == [(provider, model)]


@pytest.mark.parametrize("model, total", [
    ("openai/gpt-4o-mini", "0.75"),  # OpenAI's $0.15 / $0.60 per million tokens
    ("anthropic/claude-3-haiku-20240307", "1.50"),  # Anthropic's $0.25 / $1.25
])
def test_openrouter_bills_a_vendor_prefixed_name_at_that_vendors_price(instrumented, replay_server, model, total):
    """A declared resale: OpenRouter passes the underlying provider's price through (catalog ``resells``)."""
    _through_host(replay_server, "openrouter.ai", model)
    [span] = instrumented.aicost_spans()
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == "openrouter" and attrs["aicost.price.known"] is True
    assert Decimal(attrs["aicost.cost.total_usd"]) == Decimal(total)


def test_one_text_walker_serves_every_vendor_and_never_raises():
    """``vendor.walk_text`` walks request contents for OpenAI / Anthropic, Gemini and Bedrock alike; each vendor
    only says what one node holds. Pathological input (nested past any real request) is counted as inexact."""
    from aicost import tokens
    from aicost.integrations.bedrock import ConverseShape
    from aicost.integrations.stainless import StainlessShape

    gemini = GeminiShape("max_output_tokens").input_text(
        {"contents": [types.Content(role="user", parts=[types.Part(text="a"), types.Part(text="b")]), "c"],
         "config": {"system_instruction": "s"}})
    assert (gemini.pieces, gemini.exact) == (("a", "b", "c", "s"), True)
    image = types.Part.from_bytes(data=b"x", mime_type="image/png")
    assert GeminiShape().input_text({"contents": [types.Content(role="user", parts=[image])]}).exact is False
    converse = ConverseShape().input_text({"messages": [{"role": "user", "content": [{"text": "a"}, {"image": {}}]}],
                                           "system": [{"text": "s"}]})
    assert (converse.pieces, converse.exact) == (("a", "s"), False)
    chat = StainlessShape().input_text({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]},
                                                     {"role": "tool", "content": "b", "name": "n"}]})
    assert chat.pieces == ("a", "b", "n") and chat.exact
    deep: list = ["x"]
    for _ in range(5000):
        deep = [deep]
    assert tokens.count_request_input({"messages": [{"role": "user", "content": deep}]}, "gpt-4o", "openai",
                                      StainlessShape()).tokens >= 0
    assert ConverseShape().input_text({"messages": deep}).exact is False


def test_an_invoke_model_body_given_as_a_dict_is_never_changed_in_the_applications_hands(instrumented, budgets,
                                                                                         replay_server):
    """The output cap policy lowers a cap where the request sends it, on a copy: the dict the application passed
    as InvokeModel's ``body`` (nested caps too) is the application's, and stays as it was, whatever botocore then
    makes of a dict body."""
    import copy

    budgets(policies=[Policy(max_output_tokens=64)])
    replay_server.enqueue(Reply.from_recording(load_recording("bedrock-invokemodel-nonstream-004")))
    body = {"max_tokens": 4000, "inferenceConfig": {"max_new_tokens": 4000},
            "messages": [{"role": "user", "content": "hi"}]}
    before = copy.deepcopy(body)
    try:
        _bedrock(replay_server).invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=body)
    except Exception as exc:  # botocore takes bytes or a file: a dict is its error to raise, as without aicost
        assert type(exc).__module__.startswith("botocore"), exc
    assert body == before


def test_every_shape_leaves_a_cap_of_zero_or_less_as_the_application_sent_it():
    """A cap of zero or less is no cap (the vendor refuses it, or reads 0 its own way): like a fraction, it is not
    overwritten, not lowered beside and not joined by a second cap, and ``unread_cap`` says why, without the value.
    The same rule for every shape."""
    from aicost.integrations.bedrock import ConverseShape
    from aicost.integrations.gemini import InteractionsShape
    from aicost.integrations.stainless import StainlessShape

    for value, kind in ((0, "an int"), (-5, "an int"), (-5.0, "a float")):
        cases = [
            (StainlessShape("max_completion_tokens"), {"max_tokens": value}, "max_tokens"),
            (StainlessShape("max_completion_tokens"), {"max_tokens": value, "max_completion_tokens": 900},
             "max_tokens"),
            (StainlessShape("max_output_tokens"), {"extra_body": {"max_output_tokens": value}}, "max_output_tokens"),
            (ConverseShape("maxTokens"), {"inferenceConfig": {"maxTokens": value}}, "inferenceConfig.maxTokens"),
            (GeminiShape("max_output_tokens"), {"config": {"max_output_tokens": value}}, "config.max_output_tokens"),
            (GeminiShape("max_output_tokens"), {"config": types.GenerateContentConfig(max_output_tokens=int(value))},
             "config.max_output_tokens"),
            (InteractionsShape("max_output_tokens"), {"generation_config": {"max_output_tokens": value}},
             "generation_config.max_output_tokens"),
            (InvokeShape("max_tokens"), {"body": json.dumps({"max_tokens": value, "max_gen_len": 900})},
             "body max_tokens"),
        ]
        for shape, kwargs, param in cases:
            sent = repr(kwargs)
            assert shape.set_output_cap(kwargs, 64) is False, (shape, kwargs)
            assert repr(kwargs) == sent
            assert shape.output_cap(kwargs) is None or "max_completion_tokens" in sent or "max_gen_len" in sent
            held = "an int" if isinstance(kwargs.get("config"), types.GenerateContentConfig) else kind  # pydantic's
            assert shape.unread_cap(kwargs) == f"{param} is sent as {held} that is not a positive whole number of " \
                                               "tokens"


def test_output_cap_policy_leaves_a_cap_of_zero_or_less_as_the_application_sent_it(
        instrumented, budgets, replay_server, openai_client):
    """``maxTokens=0`` on Converse is refused by the SDK, ``max_output_tokens=0`` reaches Gemini as 0,
    ``max_tokens=0`` reaches OpenAI as 0: as without aicost. The span says why the policy's cap was not applied."""
    from botocore.exceptions import ParamValidationError

    budgets(policies=[Policy(max_output_tokens=64)])
    replay_server.enqueue(Reply.from_recording(load_recording("gemini-generatecontent-nonstream-011")),
                          Reply.from_recording(load_recording("bedrock-invokemodel-nonstream-004")))
    gemini = _gemini(replay_server)  # held: a client collected mid-call closes its connection pool
    gemini.models.generate_content(model="gemini-2.5-flash", contents="hi", config={"max_output_tokens": 0})
    bedrock = _bedrock(replay_server)
    bedrock.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                         body=json.dumps({"max_tokens": -5, "messages": [{"role": "user", "content": "hi"}]}))
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=0)
    for cap in (0, -5):
        with pytest.raises(ParamValidationError):  # botocore's own refusal, as without aicost
            bedrock.converse(modelId="amazon.nova-micro-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}],
                             inferenceConfig={"maxTokens": cap})
    bodies = [r.json for r in replay_server.requests]
    assert len(bodies) == 3
    assert bodies[0]["generationConfig"]["maxOutputTokens"] == 0
    assert bodies[1]["max_tokens"] == -5
    assert bodies[2]["max_tokens"] == 0 and "max_completion_tokens" not in bodies[2]
    not_applied = [s.attributes.get("aicost.policy.cap_not_applied") for s in instrumented.aicost_spans()]
    assert not_applied[:3] == [
        "config.max_output_tokens is sent as an int that is not a positive whole number of tokens",
        "body max_tokens is sent as an int that is not a positive whole number of tokens",
        "max_tokens is sent as an int that is not a positive whole number of tokens"]


class _Reads(dict):
    """A dict that counts the reads of each key (``get``, ``[]``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.reads: dict[str, int] = {}

    def get(self, key, default=None):
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)

    def __getitem__(self, key):
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().__getitem__(key)


def test_set_output_cap_reads_each_cap_the_request_sends_once(monkeypatch):
    """The policy path asks ``set_output_cap`` whether the request's caps are counts and which are above the
    policy's: one read of each answers both (an InvokeModel body is parsed once, not once per question)."""
    from aicost.integrations import bedrock
    from aicost.integrations.bedrock import ConverseShape
    from aicost.integrations.gemini import InteractionsShape
    from aicost.integrations.stainless import StainlessShape

    reads, once = [], []
    for cap in (20, 900):  # under the policy's (left alone) and above it (lowered)
        cases = [
            (StainlessShape("max_completion_tokens"), _Reads(max_tokens=cap),
             ("max_completion_tokens", "max_output_tokens", "max_tokens"), lambda kw: kw),
            (ConverseShape("maxTokens"), {"inferenceConfig": _Reads(maxTokens=cap)}, ("maxTokens",),
             lambda kw: kw["inferenceConfig"]),
            (GeminiShape("max_output_tokens"), {"config": _Reads(max_output_tokens=cap)}, ("max_output_tokens",),
             lambda kw: kw["config"]),
            (InteractionsShape("max_output_tokens"), {"generation_config": _Reads(max_output_tokens=cap)},
             ("max_output_tokens",), lambda kw: kw["generation_config"]),
        ]
        for shape, kwargs, params, holder in cases:
            sent = holder(kwargs)
            assert shape.set_output_cap(kwargs, 64) is (cap > 64)
            reads.append((type(shape).__name__, {key: sent.reads.get(key) for key in params}))
            once.append((type(shape).__name__, dict.fromkeys(params, 1)))

    parses = []
    parse = bedrock._json_body
    monkeypatch.setattr(bedrock, "_json_body", lambda kwargs: parses.append(1) or parse(kwargs))
    for cap in (20, 900):
        parses.clear()
        kwargs = {"body": json.dumps({"max_tokens": cap, "max_gen_len": cap})}
        assert InvokeShape("max_tokens").set_output_cap(kwargs, 64) is (cap > 64)
        reads.append(("InvokeShape", {"body": len(parses)}))
        once.append(("InvokeShape", {"body": 1}))
    assert reads == once
