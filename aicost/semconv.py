"""Every span attribute and metric name aicost emits, in one place.

The OpenTelemetry GenAI conventions are still "Development": names move between releases. Keeping them here
means a rename is a one-line change, and tests assert against these constants rather than string literals.
Standard names live under ``gen_ai.*``; everything aicost adds lives under ``aicost.*``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

# --- GenAI semantic conventions (spans) -------------------------------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
# Renamed from cache_creation to cache_write in the new conventions repo: we emit both.
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
# De-facto cost attribute (OpenLIT, Logfire, LiteLLM emit it; Langfuse ingests it). USD, double.
GEN_AI_USAGE_COST = "gen_ai.usage.cost"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
OPENAI_REQUEST_SERVICE_TIER = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"
ANTHROPIC_REQUEST_SERVICE_TIER = "anthropic.request.service_tier"
ANTHROPIC_RESPONSE_SERVICE_TIER = "anthropic.response.service_tier"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"

# --- aicost additions --------------------------------------------------------------------------------
AICOST_COST_TOTAL = "aicost.cost.total_usd"  # exact Decimal rendered as a string: doubles lose cents at scale
AICOST_COST_PREFIX = "aicost.cost."  # + token class, e.g. aicost.cost.input_usd, aicost.cost.cache_read_usd
AICOST_PRICE_KNOWN = "aicost.price.known"
AICOST_PRICE_MODEL = "aicost.price.model"  # the catalog entry the call was priced with
AICOST_PRICE_SOURCE = "aicost.price.source"  # catalog version or "override"
AICOST_SERVICE_TIER = "aicost.service_tier"  # normalised tier the call was priced at
AICOST_USAGE_ESTIMATED = "aicost.usage.estimated"
# why the vendor's usage was not used as exact (it failed validation, or the stream ended without its final event)
AICOST_USAGE_INVALID_REASON = "aicost.usage.invalid_reason"
AICOST_USAGE_DEFERRED = "aicost.usage.deferred"  # the vendor queued the work (background response): billed later
AICOST_USAGE_CACHE_WRITE_1H = "aicost.usage.cache_write_1h.input_tokens"
AICOST_USAGE_INPUT_AUDIO = "aicost.usage.input_audio_tokens"
AICOST_USAGE_OUTPUT_AUDIO = "aicost.usage.output_audio_tokens"
AICOST_USAGE_INPUT_IMAGE = "aicost.usage.input_image_tokens"
AICOST_USAGE_OUTPUT_IMAGE = "aicost.usage.output_image_tokens"
AICOST_USAGE_INPUT_CHARACTERS = "aicost.usage.input_characters"
AICOST_USAGE_CACHE_READ_AUDIO = "aicost.usage.cache_read_audio_tokens"
AICOST_USAGE_CACHE_READ_IMAGE = "aicost.usage.cache_read_image_tokens"
AICOST_USAGE_WEB_SEARCH_REQUESTS = "aicost.usage.web_search_requests"
AICOST_USAGE_AUDIO_SECONDS = "aicost.usage.audio_seconds"  # duration-billed audio (whisper-1)
# A long-context band: which priced the call ("input>200000"), and why a band was or was not applied when the input
# crossed a threshold ("input_over_threshold", "long_context_not_enabled"; for a call of several sampling steps
# priced each by its own input: "step_input_over_threshold", "steps_under_threshold", "step_inputs_unknown").
AICOST_PRICE_TIER = "aicost.price.tier"
AICOST_PRICE_TIER_REASON = "aicost.price.tier_reason"
# The cost is an estimate although the counts are the vendor's: its long-context tier could not be determined.
AICOST_COST_ESTIMATED = "aicost.cost.estimated"
AICOST_PRICE_UNKNOWN_REASON = "aicost.price.unknown_reason"  # a call billed by a unit aicost cannot price
# Sub-inferences the vendor ran on another model and bills at that model's rates, outside gen_ai.usage.*:
# aicost.<kind>.model, aicost.usage.<kind>.input_tokens / .output_tokens, and the cost part aicost.cost.<kind>_usd
# (included in gen_ai.usage.cost). <kind> is "advisor" (Anthropic's advisor tool), "image_generation" (the
# Responses hosted image tool) or "svg" (SVG authoring in the Images API).
AICOST_SUB_PREFIX = "aicost."
AICOST_USAGE_SUB_PREFIX = "aicost.usage."
AICOST_STREAM_CHUNKS = "aicost.stream.chunks"
AICOST_STREAM_ENDED_BY = "aicost.stream.ended_by"  # exhausted (read to the end) | closed (early) | error
AICOST_ENDPOINT = "aicost.endpoint"
# Batch results (docs/batches.md): the batch a result came from, where its attribution came from ("metadata": the
# batch's own metadata, "submitter": remembered from the create in this process, "reader": the scope reading it),
# and the result's identity, which the ledger keys its row by (a result read twice is one row).
AICOST_BATCH_ID = "aicost.batch.id"
AICOST_BATCH_ATTRIBUTION = "aicost.batch.attribution"
AICOST_RECORD_ID = "aicost.record_id"
AICOST_BILLABLE = "aicost.billable"  # false on token-counting calls: a span, but nothing billed
# Which span carries the call: "aicost" (aicost's own span) or "anthropic-sdk" (the Anthropic SDK's native span,
# which aicost enriches instead of adding a second span). Either way it is the only span with the call's cost.
AICOST_SPAN_SOURCE = "aicost.span.source"

# The vendor account a call is billed to (aicost.integrations.identity): joins the call to the vendor's bill.
AICOST_CLIENT_ORGANIZATION = "aicost.client.organization"
AICOST_CLIENT_PROJECT = "aicost.client.project"
AICOST_CLIENT_KEY_FINGERPRINT = "aicost.client.api_key.fingerprint"  # HMAC-SHA256, never the key

# Attribution (issue 4 fills in the scopes; the names are fixed here).
AICOST_TEAM = "aicost.team"
AICOST_FEATURE = "aicost.feature"
AICOST_USER = "aicost.user"
AICOST_CUSTOMER = "aicost.customer"
AICOST_TAG_PREFIX = "aicost.tag."
# What the name after the prefix may be. One rule for aicost.attribute(<name>=...), upstream baggage and budget and
# policy scopes ("tag.<name>"): a budget scoped by a tag that no call can carry would silently never apply.
TAG_NAME_RULE = "a letter, then letters, digits, '_', '.' or '-'; at most 64 characters"
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


def is_tag_name(name: object) -> bool:
    """Whether ``name`` may name a tag (:data:`TAG_NAME_RULE`). Matched whole: ``$`` would accept "name\\n"."""
    return isinstance(name, str) and _TAG_NAME.fullmatch(name) is not None


# The bounds of attribution (aicost.attribution), one definition for every path that takes a value: the application's
# own arguments (refused past them), upstream baggage (dropped past them) and every row a ledger stores
# (aicost.ledger.row.within_bounds: a span another service exported, a hand-made row).
MAX_VALUE_LEN = 256  # characters of an attribution value (and of a unit's name and outcome)
MAX_OUTSIDE_TAGS = 16  # tags one request's baggage, or one ledger row from elsewhere, brings at most
# The bounds of a ledger row's other texts, held by the same function (aicost.ledger.row.within_bounds says what
# each column does past its bound). None of aicost's own values comes near them.
MAX_NAME_LEN = 256  # characters of a name a row keeps: model, provider, operation, endpoint, tier, price source and
#                     model, cache, budget, vendor project, key fingerprint, error type, the row's kind
MAX_ID_LEN = 256  # characters of an id a row keeps as it is (span or record id, run id, trace id): past it, a digest
MAX_REASON_LEN = 512  # characters of why a price is unknown (aicost's own sentences are at most about 300)


def bounded_value(value: object) -> str | None:
    """``value`` if it is a str of at most :data:`MAX_VALUE_LEN` characters, else None. Upstream baggage drops
    empty values and control characters besides."""
    return value if isinstance(value, str) and len(value) <= MAX_VALUE_LEN else None


def bounded_tags(tags: Mapping[Any, Any]) -> dict[str, str] | None:
    """The tags (name -> value) kept of a mapping from outside the application's own scopes, as upstream baggage's
    are: the first :data:`MAX_OUTSIDE_TAGS` whose name is a tag name (:func:`is_tag_name`) and whose value is a
    :func:`bounded_value`. None when that is every tag of ``tags`` as it is (nothing to leave out)."""
    kept: dict[str, str] = {}
    for name, value in tags.items():
        if len(kept) < MAX_OUTSIDE_TAGS and is_tag_name(name) and bounded_value(value) is not None:
            kept[name] = value
    return None if len(kept) == len(tags) else kept


# Comma-separated attribution keys whose upstream baggage value was one too many distinct values: recorded "other".
AICOST_ATTRIBUTION_UPSTREAM_OVERFLOW = "aicost.attribution.upstream_overflow"

# --- Metrics -----------------------------------------------------------------------------------------
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_COST = "aicost.cost"  # counter, unit USD

TOKEN_USAGE_BUCKETS = [4**i for i in range(14)]  # 1 .. 67108864, per the GenAI conventions
DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]  # 0.01 .. 81.92 s

SPAN_NAME_FORMAT = "{operation} {model}"

# --- Cache (issue 6) ---------------------------------------------------------------------------------
# On the cache lookup span (INTERNAL, "aicost.cache <name>"). Savings are never gen_ai.usage.cost: not spend.
AICOST_CACHE_NAME = "aicost.cache.name"  # the cached function ("module.qualname") or the name given
AICOST_CACHE_HIT = "aicost.cache.hit"  # bool
AICOST_CACHE_OUTCOME = "aicost.cache.outcome"  # hit | miss | bypass | uncacheable
AICOST_CACHE_TIER = "aicost.cache.tier"  # exact | semantic
AICOST_CACHE_SIMILARITY = "aicost.cache.similarity"  # cosine of the served entry (1.0 for exact hits)
AICOST_CACHE_SAVED_USD = "aicost.cache.saved_usd"  # exact Decimal string: what the original calls cost
AICOST_CACHE_VERIFIER_COST_USD = "aicost.cache.verifier_cost_usd"  # LLM judge spend during this lookup
AICOST_CACHE_VETO = "aicost.cache.semantic.veto"  # guard/verifier that rejected the best candidate
AICOST_CACHE_LOOKUP_DURATION = "aicost.cache.lookup.duration_s"
AICOST_CACHE_STORED = "aicost.cache.stored"  # bool: the miss's answer was written to the cache
METRIC_CACHE_LOOKUPS = "aicost.cache.lookups"  # counter {lookup}: name, outcome, tier
METRIC_CACHE_SAVED = "aicost.cache.saved"  # counter USD, gross savings of hits
METRIC_CACHE_VERIFIER_COST = "aicost.cache.verifier.cost"  # counter USD: net savings = saved - this
METRIC_CACHE_LOOKUP_DURATION = "aicost.cache.lookup.duration"  # histogram s
METRIC_CACHE_SIMILARITY = "aicost.cache.similarity"  # histogram of served similarity

# --- Attribution units of work and metrics (issue 4: attribution engineer) ------------------------------
# A unit of work (``aicost.feature("summarize")``) has one span. Its rollup lives under ``aicost.rollup.*`` and
# never in ``gen_ai.usage.cost`` / ``aicost.cost.total_usd``: a backend summing cost over spans counts only the
# per-call spans, so the money inside a unit is never counted twice, however deeply units nest.
AICOST_UNIT_SPAN_NAME_FORMAT = "aicost.feature {name}"
AICOST_OUTCOME = "aicost.outcome"  # succeeded | failed | never_started | a label the application chose
AICOST_OUTCOME_SUCCEEDED = "succeeded"
AICOST_OUTCOME_FAILED = "failed"  # ended by an exception, or did not finish (cancelled, dropped mid-await)
# What a plain function under @feature returned to run its body later (a coroutine, a generator) was dropped unrun.
AICOST_OUTCOME_NEVER_STARTED = "never_started"
AICOST_ROLLUP_PREFIX = "aicost.rollup."
AICOST_ROLLUP_CALLS = "aicost.rollup.calls"
AICOST_ROLLUP_ERRORS = "aicost.rollup.errors"  # calls inside that ended with error.type
AICOST_ROLLUP_UNKNOWN_COST_CALLS = "aicost.rollup.unknown_cost_calls"  # calls with usage but no known price
AICOST_ROLLUP_COST = "aicost.rollup.cost"  # double USD, for queries; NOT gen_ai.usage.cost
AICOST_ROLLUP_COST_TOTAL = "aicost.rollup.cost.total_usd"  # exact Decimal as a string
AICOST_ROLLUP_INPUT_TOKENS = "aicost.rollup.usage.input_tokens"
AICOST_ROLLUP_OUTPUT_TOKENS = "aicost.rollup.usage.output_tokens"
AICOST_ROLLUP_CACHE_READ_TOKENS = "aicost.rollup.usage.cache_read.input_tokens"
AICOST_ROLLUP_CACHE_WRITE_TOKENS = "aicost.rollup.usage.cache_write.input_tokens"
AICOST_ROLLUP_REASONING_TOKENS = "aicost.rollup.usage.reasoning.output_tokens"
AICOST_ROLLUP_USAGE_ESTIMATED = "aicost.rollup.usage.estimated"
# The run a span belongs to (``aicost.attribution.current_run_id()``: the unit's span id, 16 hex digits, random
# without a span): on the unit's own span, and on each call and cache hit inside it, so a ledger fed from exported
# spans joins a call to its run by this value, whatever spans lie between them or whichever batch brings the unit.
# Only on the spans of a run whose own span is exported (``UnitOfWork.span_run_id``): that ledger gets the run from it.
AICOST_RUN_ID = "aicost.run.id"
METRIC_FEATURE_RUNS = "aicost.feature.runs"  # counter {run}: aicost.feature, aicost.outcome, aicost.team
# The cost counter again, as integer nano-USD: sums across series are exact in float64 backends (Prometheus).
METRIC_COST_NANO_USD = "aicost.cost.nano_usd"

# --- Budgets and policies (issue 5: aicost/budget) ------------------------------------------------------
# Span attributes set by the budget guard (via CallInfo.span_attributes) and labels of its metric.
AICOST_BUDGET_DECISION = "aicost.budget.decision"  # blocked | downgraded | warned | callback | store_unavailable
AICOST_BUDGET_NAME = "aicost.budget.name"  # the budget that blocked / downgraded / warned
AICOST_BUDGET_RESERVED_USD = "aicost.budget.reserved_usd"  # worst case held before the call (Decimal string)
AICOST_BUDGET_DOWNGRADED_FROM = "aicost.budget.downgraded_from"  # the model the application asked for
AICOST_POLICY_RULE = "aicost.policy.rule"  # the policy that refused the call
AICOST_POLICY_MAX_OUTPUT_TOKENS = "aicost.policy.max_output_tokens"  # output cap written into the request
AICOST_POLICY_MAX_TOKENS_FROM = "aicost.policy.max_tokens_from"  # the output cap the application asked for
# why a policy's output cap was not applied: the request sends a cap that is no count (``max_tokens=500.5``)
AICOST_POLICY_CAP_NOT_APPLIED = "aicost.policy.cap_not_applied"
METRIC_BUDGET_DECISIONS = "aicost.budget.decisions"  # counter {call}: aicost.budget.decision, aicost.budget.name
