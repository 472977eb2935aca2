#!/usr/bin/env python3
"""Drive projsync's MCP server with the official MCP Python SDK (PyPI `mcp`).

Run by tests/e2e/mcp.rs with the venv of scripts/dev-venv.sh, once over
stdio (`projsync mcp`) and once over Streamable HTTP (the API's /mcp). The
point is a client nobody here wrote: if the SDK cannot initialize, list,
call, read or subscribe, neither can the assistants our users run.

    python tests/mcp/client.py SCENARIO.json    (or `-` for stdin)

The scenario is a JSON object written by the Rust test, which set up the
world (projects, syncs, keys) and knows what the answers must be:

    transport     "stdio" or "http"
    command, env  stdio: the projsync binary and its whole environment
    url           http: the /mcp endpoint
    keys          {"read", "write", "other"}: other is a read key of
                  another tenant
    budget        the server's max_result_bytes
    project       {"name", "id"}: the project every check is about
    last_sync     its last sync, as list_projects must say
    files         every file path of its active tree
    sibling       {"name", "id", "files"}: another project of the same
                  tenant, so that leaving `project` out is ambiguous
    scoped        stdio: the connections run `projsync mcp --project NAME`
                  (only that project's resources; `project` optional).
                  Otherwise leaving `project` out must be an isError
    resource      {"path", "content"}: a small file, read as a resource
    update        {"path", "content"}: a file committed but not yet synced:
                  the client subscribes to it and to the project root,
                  starts a sync with the write key, waits for both
                  notifications, then reads the new content
    search        {"query", "path"}: the query must rank that file first
    symbol        {"name", "path", "caller"}: a function, its file, and a
                  function of the same file that calls it
    history       {"path", "first_sync", "first_content", "second_sync",
                   "second_content", "old_words"}: one file as of two
                  syncs; old_words are only in the first version
    big           {"path", "file"}: a file larger than the budget; `file` is
                  where its committed text is on disk
    wide_query    a keyword query that matches much of the tree
    other_mode    how the other tenant's client connects ("auto" by default,
                  so the server/discover fallback is exercised too)
    call_timeout  seconds per request (default 10)
    sync_timeout  seconds to wait for a sync's notifications (default 30)

It prints one line per check and exits 0, or exits 1 with the first
mismatch. Every request has a timeout and the whole run a deadline, so a
server that stops answering fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import urllib.parse
import warnings
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

# resources/subscribe is the 2025-11-25 way to be told of changes (the SDK
# flags it as deprecated for the 2026 protocol, which projsync does not
# speak); the warning would only clutter the test output.
warnings.simplefilter("ignore", MCPDeprecationWarning)

MARKER = "[… truncated by projsync …]"
TOOLS = {
    "list_projects",
    "search",
    "read_entry",
    "list_symbols",
    "find_references",
    "sync_status",
    "start_sync",
}
# A deadline for the whole run: the Rust test waits a little longer, so the
# message that says where it stuck comes from here.
DEADLINE_SECONDS = 50


class Mismatch(Exception):
    """What the server answered is not what the contract says."""


def check(cond: Any, msg: str) -> None:
    if not cond:
        raise Mismatch(msg)


def ok(msg: str) -> None:
    print(f"ok [{SCENARIO['transport']}] {msg}", flush=True)


SCENARIO: dict[str, Any] = {}


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def resource_uri(project: str, path: str) -> str:
    """projsync://{project}/{path}, each segment percent-encoded, `/` kept."""
    segs = [urllib.parse.quote(s, safe="") for s in path.split("/")]
    return f"projsync://{urllib.parse.quote(project, safe='')}/" + "/".join(segs)


# What the SDK's transports could not read as MCP (a line on a stdio
# server's stdout that is not JSON-RPC, a broken event stream): the run
# fails on any, since a client would have lost a message.
FAULTS: list[str] = []


class Inbox:
    """A connection's server notifications: the resources/updated URIs as
    they come, and transport faults (into FAULTS)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.uris: list[str] = []
        self._changed = anyio.Event()

    async def handler(self, message: Any) -> None:
        # The SDK hands every server notification, and transport faults, here.
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(message.params.uri)
            self._changed.set()
        elif isinstance(message, Exception):
            FAULTS.append(f"{self.name}: {message!r}")
            print(f"transport fault ({self.name}): {message!r}", file=sys.stderr, flush=True)

    async def wait_for(self, want: set[str]) -> None:
        while not want <= set(self.uris):
            await self._changed.wait()
            self._changed = anyio.Event()


@asynccontextmanager
async def connect(key_name: str, *, mode: str = "legacy", inbox: Inbox | None = None) -> AsyncIterator[Client]:
    """An initialized client holding the scenario's key `key_name`.

    The initialize request has the per-request timeout like every other; the
    run's deadline covers a server process that never answers at all."""
    sc = SCENARIO
    key = sc["keys"][key_name]
    inbox = inbox or Inbox(key_name)
    common: dict[str, Any] = dict(
        mode=mode,
        read_timeout_seconds=float(sc.get("call_timeout", 10)),
        message_handler=inbox.handler,
        # Every read must reach the server: a result cached from before a
        # sync would hide what the sync changed.
        cache=None,
    )
    if sc["transport"] == "stdio":
        args = ["mcp"]
        if sc.get("scoped") and key_name != "other":
            args += ["--project", sc["project"]["name"]]
        env = dict(sc["env"])
        if key_name == "write":
            # Both ways of giving the key: --key here, the environment there.
            env["PROJSYNC_API_KEY"] = key
        else:
            args += ["--key", key]
        params = StdioServerParameters(command=sc["command"], args=args, env=env, cwd=sc.get("cwd"))
        async with Client(params, **common) as client:
            yield client
    else:
        # The SDK's transport takes an httpx2 client for anything beyond the
        # URL; the bearer key rides on its default headers. The long read
        # timeout is for the GET event stream the notifications come on.
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10.0, read=300.0)) as http:
            transport = streamable_http_client(sc["url"], http_client=http)
            async with Client(transport, **common) as client:
                yield client


async def call(client: Client, tool: str, args: dict[str, Any]) -> tuple[bool, Any, str]:
    """Call `tool`: (is_error, parsed JSON or None, text). Checks the shape
    every projsync tool answers with: one text content within the budget."""
    try:
        res = await client.call_tool(tool, args)
    except MCPError as e:
        raise Mismatch(f"{tool}({args}) was a protocol error ({e.code}: {e}); tool errors must be isError results")
    check(
        len(res.content) == 1 and isinstance(res.content[0], types.TextContent),
        f"{tool}({args}) must answer one text content, got {res.content!r}",
    )
    text = res.content[0].text
    check(
        utf8_len(text) <= SCENARIO["budget"],
        f"{tool}({args}) answered {utf8_len(text)} bytes, over the budget of {SCENARIO['budget']}",
    )
    if res.is_error:
        check(text.strip(), f"{tool}({args}) is an error without a message")
        return True, None, text
    try:
        body = json.loads(text)
    except ValueError as e:
        raise Mismatch(f"{tool}({args}) text is not JSON ({e}): {text[:300]!r}")
    check(isinstance(body, dict), f"{tool}({args}) JSON is not an object: {text[:300]!r}")
    # An answer that was not cut may leave `truncated` out: to whoever reads
    # it, that is the same as null.
    body.setdefault("truncated", None)
    return False, body, text


async def call_ok(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    is_error, body, text = await call(client, tool, args)
    check(not is_error, f"{tool}({args}) failed: {text}")
    return body


async def call_err(client: Client, tool: str, args: dict[str, Any]) -> str:
    is_error, _, text = await call(client, tool, args)
    check(is_error, f"{tool}({args}) must be an isError result, got: {text[:500]}")
    return text


def mine(**args: Any) -> dict[str, Any]:
    """Tool arguments naming the scenario's project: the tenant has two."""
    return {"project": SCENARIO["project"]["name"], **args}


def same_project(value: Any) -> bool:
    """A "project" field may be the name, the id, or an object with them."""
    p = SCENARIO["project"]
    if isinstance(value, dict):
        return value.get("name") == p["name"] or value.get("id") == p["id"]
    return value in (p["name"], p["id"])


def check_truncated_field(body: dict[str, Any], what: str) -> None:
    check("truncated" in body, f"{what}: no `truncated` field")
    t = body["truncated"]
    check(t is None or (isinstance(t, str) and t.strip()), f"{what}: `truncated` must be null or a message, got {t!r}")


# --- the checks -------------------------------------------------------------


def check_handshake(client: Client) -> None:
    check(
        client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS,
        f"negotiated {client.protocol_version!r}, not a handshake-era version",
    )
    info = client.server_info
    check(info is not None and info.name, f"initialize named no server: {info!r}")
    caps = client.server_capabilities
    check(caps.tools is not None, f"no tools capability: {caps!r}")
    check(caps.resources is not None and caps.resources.subscribe, f"no resources capability with subscribe: {caps!r}")
    ok(f"initialize: {info.name} {info.version}, protocol {client.protocol_version}")


async def check_tools(client: Client) -> None:
    tools, cursor = [], None
    for _ in range(20):
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if cursor is None:
            break
    names = {t.name for t in tools}
    check(TOOLS <= names, f"tools/list lacks {sorted(TOOLS - names)}; it has {sorted(names)}")
    for t in tools:
        check(t.description, f"tool {t.name} has no description")
        check(t.input_schema.get("type") == "object", f"tool {t.name} input schema is not an object: {t.input_schema}")
    extra = sorted(names - TOOLS)
    ok(f"tools/list: the {len(TOOLS)} tools" + (f" (and {extra})" if extra else ""))


async def check_resources(client: Client) -> None:
    sc = SCENARIO
    name = sc["project"]["name"]
    uris, cursor, pages = [], None, 0
    while True:
        page = await client.list_resources(cursor=cursor)
        pages += 1
        for r in page.resources:
            check(r.mime_type == "text/plain", f"resource {r.uri} has mimeType {r.mime_type!r}")
            uris.append(r.uri)
        cursor = page.next_cursor
        if cursor is None:
            break
        check(pages < 1000, "resources/list never ends")
    check(len(uris) == len(set(uris)), "resources/list repeats a URI across pages")
    want = {resource_uri(name, p) for p in sc["files"]}
    if not sc.get("scoped"):
        # Every project of the tenant, the sibling's files too.
        sib = sc["sibling"]
        want |= {resource_uri(sib["name"], p) for p in sib["files"]}
    got = set(uris)
    check(
        got == want,
        f"resources/list: {len(got)} URIs, want {len(want)}; missing {sorted(want - got)[:5]}, "
        f"unexpected {sorted(got - want)[:5]}",
    )
    ok(f"resources/list: {len(uris)} resources in {pages} pages, URIs percent-encoded")

    small = sc["resource"]
    uri = resource_uri(name, small["path"])
    res = await client.read_resource(uri)
    check(len(res.contents) == 1, f"resources/read {uri}: {len(res.contents)} contents")
    c = res.contents[0]
    check(isinstance(c, types.TextResourceContents), f"resources/read {uri}: not text: {c!r}")
    check(c.uri == uri, f"resources/read {uri}: answered for {c.uri}")
    check(c.text == small["content"], f"resources/read {uri}: content {c.text[:200]!r} != {small['content'][:200]!r}")
    ok(f"resources/read {uri}: the file's content")

    big = sc["big"]
    uri = resource_uri(name, big["path"])
    res = await client.read_resource(uri)
    c = res.contents[0]
    check(utf8_len(c.text) <= sc["budget"], f"resources/read {uri}: {utf8_len(c.text)} bytes over the budget")
    # Here the marker itself may carry the advice, so only its words are
    # looked for.
    check("truncated by projsync" in c.text, f"resources/read {uri}: cut without the marker {MARKER!r}")
    check(
        "read_entry" in c.text and "offset" in c.text,
        f"resources/read {uri}: the cut does not say to call read_entry with offset",
    )
    ok(f"resources/read {uri}: cut to {utf8_len(c.text)} bytes with the marker")


async def check_list_projects(client: Client) -> None:
    sc = SCENARIO
    body = await call_ok(client, "list_projects", {})
    projects = body.get("projects")
    check(isinstance(projects, list), f"list_projects: {body}")
    names = sorted(p.get("name") for p in projects)
    want = sorted([sc["project"]["name"], sc["sibling"]["name"]])
    # With --project, listing only that one would do as well.
    scoped_only = sc.get("scoped") and names == [sc["project"]["name"]]
    check(names == want or scoped_only, f"list_projects: {names}, want {want}")
    for p in projects:
        for field in ("id", "name", "branch", "provider", "repository", "last_sync_id", "schedule"):
            check(field in p, f"list_projects: project lacks `{field}`: {p}")
    p = next(p for p in projects if p["name"] == sc["project"]["name"])
    check(p["id"] == sc["project"]["id"], f"list_projects: {p}")
    last = p["last_sync_id"]
    check(last == sc["last_sync"], f"list_projects: last_sync_id {last}, want {sc['last_sync']}")
    nxt = body.get("next_cursor", "missing")
    check(nxt is None, f"list_projects: next_cursor {nxt!r}")
    ok(f"list_projects: {names}")


def file_of(path: str) -> str:
    """A result's file: symbol entries are named `file#Qualified::name`."""
    return path.split("#", 1)[0]


async def check_search(client: Client) -> None:
    sc = SCENARIO
    s = sc["search"]
    # By name and by id.
    for project in (sc["project"]["name"], sc["project"]["id"]):
        args: dict[str, Any] = {"query": s["query"], "mode": "keyword", "k": 5, "project": project}
        body = await call_ok(client, "search", args)
        for field in ("project", "mode", "model", "results", "semantic", "truncated"):
            check(field in body, f"search: no `{field}` in {list(body)}")
        check(same_project(body["project"]), f"search: project {body['project']!r}")
        check(body["mode"] == "keyword", f"search: mode {body['mode']!r}")
        check_truncated_field(body, "search")
        results = body["results"]
        check(results, f"search {args}: no results")
        for r in results:
            for field in ("path", "start_line", "end_line", "score", "kind", "content", "sync_id"):
                check(field in r, f"search: result lacks `{field}`: {r}")
        top = results[0]
        check(
            file_of(top["path"]) == s["path"],
            f"search {s['query']!r}: top result {top['path']}, want {s['path']}; "
            f"all: {[r['path'] for r in results]}",
        )
        check(len(results) <= 5, f"search k=5 answered {len(results)} results")
    ok(f"search {s['query']!r} over {len(sc['files'])} files: {top['path']} first (by name and by id)")

    # An assistant that names no mode gets the default (hybrid): with or
    # without vectors, the file must still come first.
    body = await call_ok(client, "search", mine(query=s["query"]))
    check(body["results"], f"search {s['query']!r} in the default mode: no results")
    top = body["results"][0]["path"]
    check(file_of(top) == s["path"], f"search {s['query']!r} in the default mode: {top} first, want {s['path']}")
    ok(f"search in the default mode: {top} first (mode {body['mode']}, semantic: {body['semantic']!r})")

    # path_prefix narrows.
    prefix = s["path"].rsplit("/", 1)[0] + "/"
    body = await call_ok(client, "search", mine(query=s["query"], mode="keyword", path_prefix=prefix))
    check(all(r["path"].startswith(prefix) for r in body["results"]), f"search path_prefix={prefix}: {body['results']}")
    check(body["results"], f"search path_prefix={prefix}: no results")

    # A wide search stays within the budget, saying so when it had to cut.
    body = await call_ok(client, "search", mine(query=sc["wide_query"], mode="keyword", k=50))
    check_truncated_field(body, "wide search")
    ok(f"search k=50: {len(body['results'])} results, truncated={'yes' if body['truncated'] else 'no'}")


async def check_history(client: Client) -> None:
    sc = SCENARIO
    h = sc["history"]
    fields = (
        *("project", "path", "as_of", "sync_id", "language"),
        *("total_bytes", "offset", "next_offset", "content", "truncated"),
    )
    old = await call_ok(client, "read_entry", mine(path=h["path"], as_of=h["first_sync"]))
    for field in fields:
        check(field in old, f"read_entry: no `{field}` in {list(old)}")
    check(old["content"] == h["first_content"], f"read_entry as_of first sync: {old['content'][:300]!r}")
    check(old["sync_id"] == h["first_sync"], f"read_entry as_of first sync: written by {old['sync_id']}")
    check(old["as_of"] == h["first_sync"], f"read_entry as_of: echoed {old['as_of']!r}")
    check(old["path"] == h["path"] and same_project(old["project"]), f"read_entry: {old['path']} of {old['project']}")
    check(old["truncated"] is None and old["next_offset"] is None, f"read_entry of a small file was cut: {old}")
    now = await call_ok(client, "read_entry", {"project": sc["project"]["name"], "path": h["path"]})
    check(now["content"] == h["second_content"], f"read_entry now: {now['content'][:300]!r}")
    check(now["sync_id"] == h["second_sync"], f"read_entry now: written by {now['sync_id']}, want {h['second_sync']}")
    check(now["as_of"] is None, f"read_entry now: as_of {now['as_of']!r}")
    check(now["total_bytes"] == utf8_len(h["second_content"]), f"read_entry: total_bytes {now['total_bytes']}")
    ok(f"read_entry {h['path']}: as of {h['first_sync']} the old text, now the new")

    # Search as of the first sync finds the words only the old version had.
    body = await call_ok(client, "search", mine(query=h["old_words"], mode="keyword", as_of=h["first_sync"]))
    check(
        any(file_of(r["path"]) == h["path"] for r in body["results"]),
        f"search as_of first sync for {h['old_words']!r}: {[r['path'] for r in body['results']]}",
    )
    body = await call_ok(client, "search", mine(query=h["old_words"], mode="keyword", path_prefix=h["path"]))
    check(
        not any(file_of(r["path"]) == h["path"] for r in body["results"]),
        f"search now for {h['old_words']!r} still finds the old version: {body['results']}",
    )
    ok("search as_of: the old version's words are found then, not now")


async def check_budget(client: Client) -> None:
    sc = SCENARIO
    big = sc["big"]
    total = utf8_len(BIG_TEXT)
    pieces, offset, pages = [], 0, 0
    while True:
        body = await call_ok(client, "read_entry", mine(path=big["path"], offset=offset))
        pages += 1
        check(body["offset"] == offset, f"read_entry offset={offset}: answered offset {body['offset']}")
        check(body["total_bytes"] == total, f"read_entry: total_bytes {body['total_bytes']}, want {total}")
        content, nxt = body["content"], body["next_offset"]
        if nxt is None:
            check(body["truncated"] is None, f"read_entry last page: truncated {body['truncated']!r}")
            check(MARKER not in content, "read_entry last page carries the truncation marker")
            pieces.append(content)
            break
        check(isinstance(body["truncated"], str) and "offset" in body["truncated"],
              f"read_entry cut page: `truncated` must say how to read on (offset=N), got {body['truncated']!r}")
        check(content.endswith(MARKER), f"read_entry cut page does not end with the marker: {content[-80:]!r}")
        check(nxt > offset, f"read_entry: next_offset {nxt} does not move past {offset}")
        piece = content[: -len(MARKER)]
        want = big_text_slice(offset, nxt)
        # The marker may sit on a line of its own.
        check(piece == want or piece[:-1] == want and piece[-1] in "\n ",
              f"read_entry offset={offset}: the page is not bytes {offset}..{nxt} of the file")
        pieces.append(want)
        offset = nxt
        check(pages < 100, "read_entry pages never end")
    got = "".join(pieces)
    check(got == BIG_TEXT, f"read_entry pages of {big['path']} are not the file ({utf8_len(got)} of {total} bytes)")
    check(pages > 1, f"read_entry of a {total}-byte file under a {sc['budget']}-byte budget came in one page")
    ok(f"read_entry {big['path']} ({total} bytes): {pages} pages within {sc['budget']} bytes, offsets add up")


# The big file's text, read from the repository's work tree (the scenario
# names it), to check each page against.
BIG_TEXT: str = ""


def big_text_slice(start: int, end: int) -> str:
    return BIG_TEXT.encode("utf-8")[start:end].decode("utf-8")


async def check_symbols(client: Client) -> None:
    sc = SCENARIO
    sym = sc["symbol"]
    body = await call_ok(client, "list_symbols", mine(q=sym["name"]))
    check_truncated_field(body, "list_symbols")
    found = [s for s in body["symbols"] if s.get("name") == sym["name"] and s.get("path") == sym["path"]]
    check(found, f"list_symbols q={sym['name']}: not found in {[s.get('qualified_name') for s in body['symbols']]}")
    s = found[0]
    for field in ("qualified_name", "name", "kind", "path", "start_line", "end_line", "signature"):
        check(field in s, f"list_symbols: symbol lacks `{field}`: {s}")
    ok(f"list_symbols q={sym['name']}: {s['qualified_name']}")

    refs = await call_ok(client, "find_references", mine(symbol=s["qualified_name"]))
    check_truncated_field(refs, "find_references")
    check(refs["symbol"].get("qualified_name") == s["qualified_name"], f"find_references: symbol {refs['symbol']}")
    hits = [r for r in refs["references"] if r["path"] == sym["path"] and sym["caller"] in (r.get("in_symbol") or "")]
    check(hits, f"find_references {s['qualified_name']}: no reference from {sym['caller']}: {refs['references']}")
    ok(f"find_references: called from {hits[0]['in_symbol']} line {hits[0]['line']}")

    # Thousands of symbols: a page within the budget, and a cursor or a cut.
    body = await call_ok(client, "list_symbols", mine())
    first = [x["qualified_name"] for x in body["symbols"]]
    check(first, "list_symbols: no symbols")
    check(body["next_cursor"] or body["truncated"], "list_symbols of the whole tree in one answer: no cursor, no cut")
    if body["next_cursor"]:
        second = await call_ok(client, "list_symbols", mine(cursor=body["next_cursor"]))
        names = [x["qualified_name"] for x in second["symbols"]]
        check(names and not set(names) & set(first), "list_symbols: the cursor's page repeats the first")
    ok(f"list_symbols: {len(first)} symbols on the first page, next_cursor={'yes' if body['next_cursor'] else 'no'}")


async def check_sync_status(client: Client) -> None:
    sc = SCENARIO
    body = await call_ok(client, "sync_status", mine())
    for field in ("project", "last_sync", "active", "recent"):
        check(field in body, f"sync_status: no `{field}` in {list(body)}")
    ids = [r.get("id") for r in body["recent"]]
    for want in (sc["history"]["first_sync"], sc["history"]["second_sync"]):
        check(want in ids, f"sync_status: {want} not among recent {ids}")
    for r in body["recent"]:
        for field in ("id", "status", "kind", "trigger", "head_commit", "created_at", "finished_at", "error"):
            check(field in r, f"sync_status: recent sync lacks `{field}`: {r}")
    check(body["last_sync"] is not None, "sync_status: no last_sync")
    ok(f"sync_status: {len(ids)} recent syncs, last {body['last_sync'].get('id')}")


async def check_tool_errors(client: Client) -> None:
    msg = await call_err(client, "search", {"query": "x", "project": "no-such-project"})
    ok(f"search unknown project: isError ({msg[:80]!r})")
    msg = await call_err(client, "read_entry", {"project": "no-such-project", "path": "README.md"})
    ok(f"read_entry unknown project: isError ({msg[:80]!r})")
    msg = await call_err(client, "search", mine(mode="keyword"))
    ok(f"search without query: isError ({msg[:80]!r})")
    msg = await call_err(client, "search", mine(query="x", mode="telepathic"))
    ok(f"search mode=telepathic: isError ({msg[:80]!r})")
    msg = await call_err(client, "search", mine(query="x", k="many"))
    ok(f"search k='many': isError ({msg[:80]!r})")
    msg = await call_err(client, "read_entry", mine(path="no/such/file.rs"))
    ok(f"read_entry missing path: isError ({msg[:80]!r})")
    msg = await call_err(client, "read_entry", mine(path=SCENARIO["history"]["path"], as_of="not-a-sync"))
    ok(f"read_entry as_of=not-a-sync: isError ({msg[:80]!r})")


async def check_default_project(client: Client) -> None:
    """`project` left out: the --project of `projsync mcp`, or else an error
    that says to name one, since the tenant has two."""
    sc = SCENARIO
    s = sc["search"]
    if sc.get("scoped"):
        body = await call_ok(client, "search", {"query": s["query"], "mode": "keyword"})
        check(same_project(body["project"]), f"search without project under --project: {body['project']!r}")
        top = body["results"][0]["path"] if body["results"] else None
        check(top and file_of(top) == s["path"], f"search without project under --project: {top} first")
        body = await call_ok(client, "read_entry", {"path": sc["resource"]["path"]})
        check(body["content"] == sc["resource"]["content"], f"read_entry without project under --project: {body}")
        ok(f"project left out: --project {sc['project']['name']} answers")
    else:
        for tool, args in (("search", {"query": s["query"]}), ("read_entry", {"path": sc["resource"]["path"]})):
            msg = await call_err(client, tool, args)
            check("project" in msg, f"{tool} without project in a tenant of two: the message names no project: {msg!r}")
        ok(f"project left out with two projects: isError ({msg[:80]!r})")


async def check_read_key_refused(client: Client) -> None:
    msg = await call_err(client, "start_sync", mine())
    low = msg.lower()
    check("write" in low or "role" in low, f"start_sync with a read key: the message names no role: {msg!r}")
    ok(f"start_sync with a read key: refused ({msg[:100]!r})")


async def check_other_tenant(client: Client) -> None:
    sc = SCENARIO
    body = await call_ok(client, "list_projects", {})
    check(body["projects"] == [], f"another tenant's list_projects: {body}")
    for project in (sc["project"]["name"], sc["project"]["id"]):
        await call_err(client, "search", {"query": sc["search"]["query"], "project": project})
        await call_err(client, "read_entry", {"project": project, "path": sc["resource"]["path"]})
        await call_err(client, "sync_status", {"project": project})
    # No project of its own: nothing to default to.
    await call_err(client, "search", {"query": sc["search"]["query"]})
    page = await client.list_resources()
    check(page.resources == [], f"another tenant's resources/list: {[r.uri for r in page.resources][:5]}")
    uri = resource_uri(sc["project"]["name"], sc["resource"]["path"])
    try:
        res = await client.read_resource(uri)
    except MCPError:
        pass
    else:
        texts = [getattr(c, "text", "") for c in res.contents]
        check(not any(sc["resource"]["content"] in t for t in texts), f"another tenant read {uri}: {texts}")
    ok(f"another tenant ({client.protocol_version}): no projects, no resources, isError for {sc['project']['name']}")


async def check_subscription(client: Client, updates: Inbox) -> None:
    sc = SCENARIO
    name = sc["project"]["name"]
    root = f"projsync://{urllib.parse.quote(name, safe='')}/"
    update = sc["update"]
    file_uri = resource_uri(name, update["path"])
    await client.session.subscribe_resource(root)
    await client.session.subscribe_resource(file_uri)
    # Under --project the sync needs no project argument.
    body = await call_ok(client, "start_sync", {} if sc.get("scoped") else {"project": name})
    for field in ("sync_id", "status", "created", "project"):
        check(field in body, f"start_sync: no `{field}` in {body}")
    check(isinstance(body["created"], bool), f"start_sync: created {body['created']!r}")
    check(same_project(body["project"]), f"start_sync: project {body['project']!r}")
    sync_id = body["sync_id"]
    ok(f"start_sync with a write key: {sync_id} {body['status']} (created={body['created']})")
    t0 = time.monotonic()
    want = {root, file_uri}
    timeout = float(sc.get("sync_timeout", 30))
    with anyio.move_on_after(timeout):
        await updates.wait_for(want)
    check(
        want <= set(updates.uris),
        f"no notifications/resources/updated for {sorted(want - set(updates.uris))} within {timeout} s "
        f"of starting {sync_id}; got {updates.uris}",
    )
    ok(f"notifications/resources/updated for {sorted(want)} after {time.monotonic() - t0:.1f} s")
    status = await call_ok(client, "sync_status", {"project": name})
    mine = [r for r in status["recent"] if r.get("id") == sync_id]
    check(mine and mine[0]["status"] == "succeeded", f"sync_status after the notification: {sync_id} is {mine}")
    ok(f"sync_status: {sync_id} succeeded")
    res = await client.read_resource(file_uri)
    text = getattr(res.contents[0], "text", None) if res.contents else None
    check(text == update["content"], f"resources/read {file_uri} after the sync: {text!r}, want {update['content']!r}")
    ok(f"resources/read {file_uri} after the notification: the pushed content")


async def check_listen(client: Client) -> None:
    """Protocol 2026-07-28: resource updates come on a subscriptions/listen
    stream instead of resources/subscribe (a sync that changed nothing
    still succeeds, and is announced)."""
    sc = SCENARIO
    name = sc["project"]["name"]
    root = f"projsync://{urllib.parse.quote(name, safe='')}/"
    check(client.protocol_version == "2026-07-28", f"auto mode negotiated {client.protocol_version}")
    async with client.listen(resource_subscriptions=[root]) as sub:
        honored = sub.honored.resource_subscriptions or []
        check(root in honored, f"subscriptions/listen did not accept {root}: {sub.honored}")
        body = await call_ok(client, "start_sync", {} if sc.get("scoped") else {"project": name})
        t0 = time.monotonic()
        got: list[str] = []
        timeout = float(sc.get("sync_timeout", 30))
        with anyio.move_on_after(timeout):
            async for event in sub:
                uri = getattr(event, "uri", None)
                if uri is not None:
                    got.append(uri)
                if root in got:
                    break
        check(root in got, f"no resource update for {root} on the listen stream within {timeout} s of {body['sync_id']}; got {got}")
    ok(f"subscriptions/listen (2026-07-28): {root} updated after {time.monotonic() - t0:.1f} s")


async def run() -> None:
    async with connect("read") as client:
        check_handshake(client)
        await check_tools(client)
        await check_resources(client)
        await check_list_projects(client)
        await check_search(client)
        await check_history(client)
        await check_budget(client)
        await check_symbols(client)
        await check_sync_status(client)
        await check_default_project(client)
        await check_tool_errors(client)
        await check_read_key_refused(client)

    mode = SCENARIO.get("other_mode", "auto")
    try:
        async with connect("other", mode=mode) as client:
            await check_other_tenant(client)
    except MCPError as e:
        raise Mismatch(f"another tenant's client (mode={mode}) failed: {e.code}: {e}") from e

    updates = Inbox("write")
    async with connect("write", inbox=updates) as client:
        await check_subscription(client, updates)

    async with connect("write", mode="auto") as client:
        await check_listen(client)

    check(not FAULTS, f"the transport met what is not MCP (over stdio: logs belong on stderr): {FAULTS}")


def first_of(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first `kind` in `exc`, looking inside the exception groups that
    the SDK's task groups wrap errors in."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := first_of(inner, kind)) is not None:
                return found
    return None


def main() -> int:
    global BIG_TEXT
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    raw = sys.stdin.read() if sys.argv[1] == "-" else open(sys.argv[1], encoding="utf-8").read()
    SCENARIO.update(json.loads(raw))
    big = SCENARIO["big"]
    with open(big["file"], encoding="utf-8", newline="") as f:
        BIG_TEXT = f.read()
    t0 = time.monotonic()

    async def bounded() -> None:
        with anyio.fail_after(DEADLINE_SECONDS):
            await run()

    tag = f"FAIL [{SCENARIO['transport']}]"
    try:
        anyio.run(bounded)
    except BaseException as e:  # noqa: BLE001 - every way out must say why
        if (m := first_of(e, Mismatch)) is not None:
            print(f"{tag} {m}", file=sys.stderr, flush=True)
        elif first_of(e, TimeoutError) is not None:
            print(f"{tag} no answer within {DEADLINE_SECONDS} s (see the last ok line)", file=sys.stderr, flush=True)
        elif (m := first_of(e, MCPError)) is not None:
            print(f"{tag} protocol error {m.code}: {m}", file=sys.stderr, flush=True)  # type: ignore[attr-defined]
        else:
            traceback.print_exception(e)
            print(f"{tag} {e!r}", file=sys.stderr, flush=True)
        return 1
    print(f"all checks passed over {SCENARIO['transport']} in {time.monotonic() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
