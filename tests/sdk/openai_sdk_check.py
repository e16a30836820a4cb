#!/usr/bin/env python3
"""Drive `apf sim` with the official `openai` Python SDK, a client no one in this project wrote.

It completes chats and tool-call conversations, plain and streamed, checks what the SDK parses
(text, tool calls, the usage chunk, OpenRouter's extra `usage.cost`) against what the simulator
recorded (`/generation`, `/key`), and checks that refusals surface as the SDK's own exceptions.

Environment (never argv, so no key shows in a process list):
  APF_SIM_BASE_URL        the simulator's API root, http://127.0.0.1:PORT/api/v1 (loopback only)
  APF_SIM_API_KEY         an inference key created on it, with no spend yet and no limit
  APF_SIM_MANAGEMENT_KEY  its management key, to create the capped keys of the error checks
  APF_SIM_TOOL_CALLS      tool results before the final answer (the sim's --tool-calls; default 3)

Prints one line per check and exits 1 when any check fails, 2 when it cannot start.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from decimal import Decimal
from typing import Any, Callable

try:
    import openai
    from openai import OpenAI
except ImportError:
    print(
        "FAIL setup: the openai package is missing; run "
        "`python3 -m pip install -r tests/sdk/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(2)

# A paid model without prompt caching, so repeated prompts cost the same every time.
MODEL = "meta-llama/llama-3.3-70b-instruct"
# A paid model with explicit caching (cache_control markers), for the cache check.
CACHING_MODEL = "anthropic/claude-sonnet-4"
# An expensive model, for a request no small cap can afford.
EXPENSIVE_MODEL = "anthropic/claude-opus-4"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file of the repository",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_command",
            "description": "Run a shell command",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "timeout": {"type": "integer", "minimum": 1, "maximum": 60},
                },
                "required": ["command"],
            },
        },
    },
]
TOOL_NAMES = {t["function"]["name"] for t in TOOLS}

PLAIN_MESSAGES = [
    {"role": "system", "content": "You are a careful engineer."},
    {"role": "user", "content": "Plan the work for adding a cache to the build."},
]
TOOL_TASK = [{"role": "user", "content": "Find out what the README says and summarise it."}]

# How long spend may take to land on /generation and /key.
SPEND_WAIT_S = 10.0


def env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        print(f"FAIL setup: {name} is not set", file=sys.stderr)
        sys.exit(2)
    return value


def loopback_only(base_url: str) -> None:
    """Refuse any address but loopback: this check must never reach a real service."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        print(f"FAIL setup: APF_SIM_BASE_URL must be on loopback, not {host!r}", file=sys.stderr)
        sys.exit(2)


def dec(x: Any) -> Decimal:
    """A JSON number as the decimal the server wrote: floats go through their shortest form."""
    if isinstance(x, Decimal):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"not a number: {x!r}")
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
        return ok

    def equal(self, name: str, got: Any, want: Any) -> bool:
        detail = f"{got!r}" if got == want else f"got {got!r}, want {want!r}"
        return self.check(name, got == want, detail)

    def section(self, name: str, body: Callable[[], None]) -> None:
        """Run a group of checks; an exception in it is one failure, and the others still run."""
        try:
            body()
        except Exception as e:  # noqa: BLE001 - any error is a failed check, reported whole
            self.check(name, False, f"{type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stdout)


class SimApi:
    """The simulator's own routes, for what the SDK has no call for: plain HTTP, no proxy."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self.http.open(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read(), parse_float=Decimal)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw, parse_float=Decimal)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def create_key(self, management_key: str, name: str, limit: Decimal | None) -> str:
        body: dict[str, Any] = {"name": name}
        if limit is not None:
            # A JSON number, as OpenRouter's API takes it; repr keeps every digit of the decimal.
            body["limit"] = float(limit)
        status, answer = self.call("POST", "/keys", management_key, body)
        if status != 201 or not isinstance(answer, dict) or "key" not in answer:
            raise RuntimeError(f"POST /keys answered {status}")
        return answer["key"]

    def key_info(self, key: str) -> dict[str, Any]:
        status, answer = self.call("GET", "/key", key)
        if status != 200:
            raise RuntimeError(f"GET /key answered {status}")
        return answer["data"]

    def generation(self, key: str, gen_id: str) -> dict[str, Any] | None:
        """The recorded generation, waiting while it is not there yet (spend lands late)."""
        deadline = time.monotonic() + SPEND_WAIT_S
        path = "/generation?" + urllib.parse.urlencode({"id": gen_id})
        while True:
            status, answer = self.call("GET", path, key)
            if status == 200:
                return answer["data"]
            if status != 404 or time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def usage_view(usage: Any) -> dict[str, Any]:
    """The usage as the SDK parsed it: its typed token fields and OpenRouter's extras."""
    extra = usage.model_extra or {}
    details = usage.prompt_tokens_details
    return {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "total": usage.total_tokens,
        "cached": details.cached_tokens if details is not None else None,
        "cache_write": field(details, "cache_write_tokens"),
        "cost": dec(extra["cost"]) if "cost" in extra else None,
    }


def field(model: Any, name: str) -> Any:
    """A field the SDK may type (newer versions) or keep among its extras (older ones)."""
    if model is None:
        return None
    value = getattr(model, name, None)
    return value if value is not None else (model.model_extra or {}).get(name)


class Recorded:
    """A generation made through the SDK, to compare later with what the simulator recorded."""

    def __init__(self, label: str, gen_id: str, usage: dict[str, Any], streamed: bool) -> None:
        self.label = label
        self.gen_id = gen_id
        self.usage = usage
        self.streamed = streamed


class Run:
    def __init__(self) -> None:
        base_url = env("APF_SIM_BASE_URL")
        loopback_only(base_url)
        self.api_key = env("APF_SIM_API_KEY")
        self.management_key = env("APF_SIM_MANAGEMENT_KEY")
        self.tool_calls = int(os.environ.get("APF_SIM_TOOL_CALLS", "3"))
        self.sim = SimApi(base_url)
        self.base_url = base_url
        self.client = self.sdk(self.api_key)
        self.c = Checks()
        self.made: list[Recorded] = []
        self.prices: dict[str, dict[str, Decimal]] = {}
        self.plain_text: str | None = None
        self.plain_usage: dict[str, Any] | None = None
        self.tool_turns: list[dict[str, Any]] = []

    def sdk(self, key: str, strict: bool = True) -> OpenAI:
        # No retries, so each call is one request and one charge; no proxy from the environment,
        # so traffic stays on loopback whatever the machine's settings. Strict validation makes
        # the SDK refuse any response that does not fit its own types, which OpenRouter's chat
        # completions do; its /models is OpenRouter's own shape (no `object`, no `owned_by`).
        return OpenAI(
            base_url=self.base_url,
            api_key=key,
            max_retries=0,
            timeout=30.0,
            http_client=openai.DefaultHttpxClient(trust_env=False),
            _strict_response_validation=strict,
        )

    # -- models -------------------------------------------------------------------------------

    def models(self) -> None:
        listed = {m.id: m for m in self.sdk(self.api_key, strict=False).models.list()}
        self.c.check("models.list parses the catalog", MODEL in listed, f"{len(listed)} models")
        for model_id in (MODEL, CACHING_MODEL):
            pricing = (listed[model_id].model_extra or {}).get("pricing") or {}
            self.prices[model_id] = {k: dec_str(v) for k, v in pricing.items()}

    def expected_cost(self, model: str, u: dict[str, Any]) -> Decimal:
        """The tokens at the listed prices: cache reads and writes at theirs, the rest at the
        prompt price (OpenRouter's `prompt_tokens` includes both)."""
        price = self.prices[model]
        cached, written = u["cached"] or 0, u["cache_write"] or 0
        cost = price["prompt"] * (u["prompt"] - cached - written)
        cost += price["completion"] * u["completion"]
        if cached:
            cost += price["input_cache_read"] * cached
        if written:
            cost += price["input_cache_write"] * written
        return cost

    # -- plain chat ---------------------------------------------------------------------------

    def plain(self) -> None:
        resp = self.client.chat.completions.create(model=MODEL, messages=PLAIN_MESSAGES)
        u = usage_view(resp.usage)
        self.made.append(Recorded("chat", resp.id, u, streamed=False))
        choice = resp.choices[0]
        text = choice.message.content
        c = self.c
        has_text = isinstance(text, str) and len(text) > 0
        c.check("chat: a text answer", has_text, f"{len(text or '')} chars")
        c.equal("chat: finish_reason", choice.finish_reason, "stop")
        c.equal("chat: role", choice.message.role, "assistant")
        c.check("chat: no tool calls", not choice.message.tool_calls)
        c.check(
            "chat: usage tokens present and total = prompt + completion",
            u["prompt"] > 0 and u["completion"] > 0 and u["total"] == u["prompt"] + u["completion"],
            f"{u['prompt']} + {u['completion']} = {u['total']}",
        )
        c.check(
            "chat: usage.cost is a positive decimal",
            u["cost"] is not None and u["cost"] > 0,
            f"{u['cost']}",
        )
        want = self.expected_cost(MODEL, u)
        c.equal("chat: usage.cost = tokens at the listed prices", u["cost"], want)
        self.plain_text = text
        self.plain_usage = u

    def plain_streamed(self) -> None:
        stream = self.client.chat.completions.create(
            model=MODEL,
            messages=PLAIN_MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        got = collect(stream)
        c = self.c
        c.equal("stream: one generation id across chunks", len(got["ids"]), 1)
        c.check(
            "stream: text deltas join into the non-streamed answer",
            got["text"] == self.plain_text,
            f"{len(got['text'])} chars in {len(got['chunks'])} chunks",
        )
        c.equal("stream: finish_reason", got["finish_reason"], "stop")
        usage_ok = c.check(
            "stream: the SDK parses one usage chunk, last, with empty choices",
            got["usage_chunks"] == [len(got["chunks"]) - 1] and got["last_choices"] == [],
            f"usage on chunks {got['usage_chunks']} of {len(got['chunks'])}",
        )
        if not usage_ok:
            return
        u = usage_view(got["chunks"][-1].usage)
        plain = self.plain_usage or {}
        c.equal(
            "stream: usage equals the non-streamed usage",
            (u["prompt"], u["completion"], u["total"], u["cost"]),
            (plain.get("prompt"), plain.get("completion"), plain.get("total"), plain.get("cost")),
        )
        self.made.append(Recorded("stream", next(iter(got["ids"])), u, streamed=True))

    # -- tool calls ---------------------------------------------------------------------------

    def tool_loop(self) -> None:
        messages = list(TOOL_TASK)
        for turn in range(self.tool_calls + 2):
            resp = self.client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
            choice = resp.choices[0]
            u = usage_view(resp.usage)
            self.made.append(Recorded(f"tools turn {turn}", resp.id, u, streamed=False))
            if choice.finish_reason != "tool_calls":
                reason = choice.finish_reason
                self.c.equal(f"tools: turn {turn} ends with a final answer", reason, "stop")
                text = choice.message.content or ""
                self.c.check(
                    "tools: final answer after the configured tool results",
                    turn == self.tool_calls and len(text) > 0,
                    f"after {turn} tool results",
                )
                self.tool_turns.append({"text": text, "usage": u})
                return
            calls = choice.message.tool_calls or []
            call = calls[0] if calls else None
            parsed = None
            if call is not None:
                parsed = parse_call(call.id, call.function.name, call.function.arguments)
            self.c.check(
                f"tools: turn {turn} finish_reason tool_calls with a valid call",
                len(calls) == 1 and parsed is not None,
                describe_call(parsed) if parsed else f"{len(calls)} calls",
            )
            if parsed is None:
                return
            self.tool_turns.append({"call": parsed, "usage": u})
            messages += continue_with(parsed)
        self.c.check("tools: a final answer comes", False, f"none in {self.tool_calls + 2} turns")

    def named_tool(self) -> None:
        choice_of = {"type": "function", "function": {"name": "run_command"}}
        resp = self.client.chat.completions.create(
            model=MODEL, messages=TOOL_TASK, tools=TOOLS, tool_choice=choice_of
        )
        self.made.append(Recorded("named tool", resp.id, usage_view(resp.usage), streamed=False))
        choice = resp.choices[0]
        calls = choice.message.tool_calls or []
        parsed = None
        if len(calls) == 1:
            parsed = parse_call(calls[0].id, calls[0].function.name, calls[0].function.arguments)
        self.c.check(
            "tools: tool_choice naming a function calls it, with its required arguments",
            choice.finish_reason == "tool_calls"
            and parsed is not None
            and parsed["name"] == "run_command"
            and isinstance(parsed["args"].get("command"), str),
            describe_call(parsed) if parsed else f"{len(calls)} calls",
        )

    def tool_loop_streamed(self) -> None:
        messages = list(TOOL_TASK)
        if not self.c.check("stream tools: a plain conversation to repeat", bool(self.tool_turns)):
            return
        for turn, plain in enumerate(self.tool_turns):
            stream = self.client.chat.completions.create(
                model=MODEL,
                messages=messages,
                tools=TOOLS,
                stream=True,
                stream_options={"include_usage": True},
            )
            got = collect(stream)
            last_is_usage = (
                got["usage_chunks"] == [len(got["chunks"]) - 1] and got["last_choices"] == []
            )
            u = usage_view(got["chunks"][-1].usage) if last_is_usage else None
            if u is not None:
                gen_id = next(iter(got["ids"]))
                self.made.append(Recorded(f"streamed tools turn {turn}", gen_id, u, True))
            self.c.check(f"stream tools: turn {turn} ends with the usage chunk", last_is_usage)
            same_usage = u is not None and all(
                u[k] == plain["usage"][k] for k in ("prompt", "completion", "cost")
            )
            if "call" in plain:
                calls = got["tool_calls"]
                assembled = None
                if len(calls) == 1:
                    only = calls[0]
                    assembled = parse_call(only["id"], only["name"], only["arguments"])
                self.c.check(
                    f"stream tools: turn {turn} deltas assemble into the same valid call",
                    got["finish_reason"] == "tool_calls"
                    and assembled == plain["call"]
                    and same_usage,
                    describe_call(assembled) if assembled else f"{len(calls)} calls",
                )
                if assembled is None:
                    return
                messages += continue_with(assembled)
            else:
                self.c.check(
                    f"stream tools: turn {turn} streams the same final answer",
                    got["finish_reason"] == "stop" and got["text"] == plain["text"] and same_usage,
                    f"{len(got['text'])} chars",
                )

    # -- prompt caching -----------------------------------------------------------------------

    def caching(self) -> None:
        # Unique per run, so a simulator kept running between runs does not hit on the first call.
        long_context = f"Run {uuid.uuid4()}. " + "The repository layout is described here. " * 120
        messages = [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": long_context, "cache_control": {"type": "ephemeral"}}
                ],
            },
            {"role": "user", "content": "What is in the repository?"},
        ]
        ask = {"model": CACHING_MODEL, "messages": messages, "max_tokens": 32}
        first = self.client.chat.completions.create(**ask)
        second = self.client.chat.completions.create(**ask)
        u1, u2 = usage_view(first.usage), usage_view(second.usage)
        self.made.append(Recorded("cache write", first.id, u1, streamed=False))
        self.made.append(Recorded("cache read", second.id, u2, streamed=False))
        self.c.check(
            "cache: the first call writes the prefix, the repeat reads it",
            u1["cached"] == 0
            and (u1["cache_write"] or 0) > 0
            and u2["cached"] == u1["cache_write"],
            f"write {u1['cache_write']}, then cached_tokens {u2['cached']}",
        )
        self.c.equal(
            "cache: the writing call's cost is its tokens at the listed prices",
            u1["cost"],
            self.expected_cost(CACHING_MODEL, u1),
        )
        self.c.equal(
            "cache: the reading call's cost is its tokens at the listed prices",
            u2["cost"],
            self.expected_cost(CACHING_MODEL, u2),
        )
        self.c.check(
            "cache: the cached repeat costs less",
            u2["cost"] is not None and u1["cost"] is not None and u2["cost"] < u1["cost"],
            f"{u1['cost']} then {u2['cost']}",
        )

    # -- what the simulator recorded ----------------------------------------------------------

    def recorded_usage(self) -> None:
        for r in self.made:
            g = self.sim.generation(self.api_key, r.gen_id)
            self.c.check(f"generation {r.label}: /generation knows it", g is not None, r.gen_id)
            if g is None:
                continue
            got = (
                g["tokens_prompt"],
                g["tokens_completion"],
                g["native_tokens_cached"],
                dec(g["total_cost"]),
                g["streamed"],
            )
            u = r.usage
            want = (u["prompt"], u["completion"], u["cached"], u["cost"], r.streamed)
            name = f"generation {r.label}: tokens, cached, cost, streamed match the SDK's"
            self.c.equal(name, got, want)

    def key_usage(self, baseline: Decimal) -> None:
        spent = sum((r.usage["cost"] for r in self.made), Decimal(0))
        deadline = time.monotonic() + SPEND_WAIT_S
        while True:
            usage = dec(self.sim.key_info(self.api_key)["usage"]) - baseline
            if usage == spent or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        name = f"/key usage = the sum of the SDK's {len(self.made)} usage.cost values"
        self.c.equal(name, usage, spent)

    # -- refusals -----------------------------------------------------------------------------

    def errors(self) -> None:
        c = self.c
        bad = self.sdk("sk-or-v1-" + "0" * 64)
        try:
            bad.chat.completions.create(model=MODEL, messages=PLAIN_MESSAGES)
            c.check("error: an unknown key raises AuthenticationError", False, "no error")
        except openai.AuthenticationError as e:
            c.equal("error: an unknown key raises AuthenticationError (401)", e.status_code, 401)

        # A cap of exactly one small request: the probe shows what that request costs (answers
        # are deterministic and max_tokens truncates, so the second one costs the same).
        small = {"model": MODEL, "messages": PLAIN_MESSAGES, "max_tokens": 16}
        probe = self.client.chat.completions.create(**small)
        cost = usage_view(probe.usage)["cost"]
        self.made.append(Recorded("cap probe", probe.id, usage_view(probe.usage), streamed=False))
        capped_key = self.sim.create_key(self.management_key, f"sdk-check-cap-{uuid.uuid4()}", cost)
        capped = self.sdk(capped_key)
        capped.chat.completions.create(**small)
        deadline = time.monotonic() + SPEND_WAIT_S
        while time.monotonic() < deadline:
            if dec(self.sim.key_info(capped_key)["limit_remaining"]) <= 0:
                break
            time.sleep(0.1)
        info = self.sim.key_info(capped_key)
        c.check(
            "error: a tiny cap is exhausted by one request",
            dec(info["limit_remaining"]) == 0,
            f"limit {info['limit']}, usage {info['usage']}",
        )
        try:
            capped.chat.completions.create(**small)
            c.check("error: an exhausted cap raises PermissionDeniedError", False, "no error")
        except openai.PermissionDeniedError as e:
            c.check(
                "error: an exhausted cap raises PermissionDeniedError (403) 'Key limit exceeded'",
                e.status_code == 403 and "Key limit exceeded" in str(e),
                str(e)[:120],
            )

        roomy_name = f"sdk-check-402-{uuid.uuid4()}"
        roomy_key = self.sim.create_key(self.management_key, roomy_name, Decimal("0.01"))
        roomy = self.sdk(roomy_key)
        try:
            roomy.chat.completions.create(
                model=EXPENSIVE_MODEL, messages=PLAIN_MESSAGES, max_tokens=32000
            )
            c.check("error: an unaffordable request raises APIStatusError 402", False, "no error")
        except openai.PermissionDeniedError as e:
            c.check("error: an unaffordable request raises APIStatusError 402", False, f"403: {e}")
        except openai.APIStatusError as e:
            c.check(
                "error: an unaffordable request raises APIStatusError 402",
                e.status_code == 402 and "max_tokens" in str(e),
                str(e)[:120],
            )
        refused_usage = dec(self.sim.key_info(roomy_key)["usage"])
        c.equal("error: the refused request cost nothing", refused_usage, Decimal(0))

    def main(self) -> int:
        print(f"openai SDK {openai.__version__} against {self.base_url}", flush=True)
        baseline = dec(self.sim.key_info(self.api_key)["usage"])
        c = self.c
        c.section("models", self.models)
        c.section("chat", self.plain)
        c.section("stream", self.plain_streamed)
        c.section("tools", self.tool_loop)
        c.section("stream tools", self.tool_loop_streamed)
        c.section("named tool", self.named_tool)
        c.section("cache", self.caching)
        c.section("errors", self.errors)
        c.section("generation", self.recorded_usage)
        c.section("key usage", lambda: self.key_usage(baseline))
        total = c.passed + c.failed
        verdict = "all passed" if c.failed == 0 else f"{c.failed} FAILED"
        print(f"openai SDK check: {c.passed} of {total} checks passed; {verdict}", flush=True)
        return 0 if c.failed == 0 else 1


def dec_str(s: Any) -> Decimal:
    """A price as /models lists it: a decimal string."""
    if not isinstance(s, str):
        raise TypeError(f"price is not a string: {s!r}")
    return Decimal(s)


def collect(stream: Any) -> dict[str, Any]:
    """Everything a streamed completion gave, as the SDK parsed it."""
    chunks = list(stream)
    text = ""
    finish = None
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            finish = choice.finish_reason or finish
            for tc in delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function is not None:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""
    return {
        "chunks": chunks,
        "ids": {ch.id for ch in chunks},
        "text": text,
        "finish_reason": finish,
        "tool_calls": [calls[i] for i in sorted(calls)],
        "usage_chunks": [i for i, ch in enumerate(chunks) if ch.usage is not None],
        "last_choices": chunks[-1].choices if chunks else None,
    }


def parse_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any] | None:
    """A tool call, if it names an offered tool and carries a JSON object of arguments."""
    if not isinstance(call_id, str) or not call_id or name not in TOOL_NAMES:
        return None
    try:
        args = json.loads(arguments)
    except (TypeError, ValueError):
        return None
    if not isinstance(args, dict):
        return None
    return {"id": call_id, "name": name, "arguments": arguments, "args": args}


def describe_call(call: dict[str, Any]) -> str:
    return f"{call['name']}({json.dumps(call['args'], sort_keys=True)})"


def continue_with(call: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant's call and the tool's result, to send back."""
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
        ],
    }
    result = {
        "role": "tool",
        "tool_call_id": call["id"],
        "content": f"result of {describe_call(call)}",
    }
    return [assistant, result]


if __name__ == "__main__":
    sys.exit(Run().main())
