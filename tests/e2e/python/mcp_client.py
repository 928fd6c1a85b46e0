"""The MCP Python SDK as an MCP client with its own OAuth support, unchanged, against an MCP server behind Envoy
and keymesh. The SDK meets the 401, reads the RFC 9728 metadata the filter serves, finds the sidecar's RFC 8414
metadata, registers itself (RFC 7591), runs the code flow with PKCE and `resource`, and lists the server's tools.

    mcp_client.py

Environment: MCP_URL (the server's URL through Envoy), KEYMESH_URL (the issuer), REDIRECT_URI (loopback),
USERNAME, PASSWORD. Prints JSON on stdout: the tools, the registered client id, the access token.

The only code here is configuration and the user: the client metadata, token storage in memory, and the redirect
and callback handlers, where `requests` stands in for the user's browser on the login and consent pages.
"""

import asyncio
import json
import os
import sys
from urllib.parse import parse_qs, urlparse

from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

import consent_forms

ENV = os.environ
BASE = ENV["KEYMESH_URL"].rstrip("/")


def log(message):
    print(f"[mcp] {message}", file=sys.stderr, flush=True)


class MemoryStorage(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        log(f"registered as {client_info.client_id}")
        self.client = client_info


def login_and_approve(authorization_url):
    """The SDK's redirect handler: the URL must ask for S256 PKCE and this MCP server as `resource`."""
    query = parse_qs(urlparse(authorization_url).query)
    assert query.get("code_challenge_method") == ["S256"], authorization_url
    assert query.get("resource") == [ENV["MCP_URL"]], authorization_url
    return consent_forms.login_and_approve(authorization_url)


async def main():
    location = {}

    async def redirect_handler(authorization_url: str) -> None:
        log("authorization URL received; logging in and approving")
        location["value"] = await asyncio.to_thread(login_and_approve, authorization_url)

    async def callback_handler() -> tuple[str, str | None]:
        query = parse_qs(urlparse(location["value"]).query)
        return query["code"][0], query.get("state", [None])[0]

    storage = MemoryStorage()
    auth = OAuthClientProvider(
        server_url=ENV["MCP_URL"],
        client_metadata=OAuthClientMetadata(
            client_name="keymesh e2e MCP client",
            redirect_uris=[ENV["REDIRECT_URI"]],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with streamablehttp_client(ENV["MCP_URL"], auth=auth) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool("order_status", {"order_id": "42"})
    names = [tool.name for tool in tools.tools]
    log(f"tools: {names}")
    print(
        json.dumps(
            {
                "tools": names,
                "call": [c.text for c in result.content if getattr(c, "text", None)],
                "client_id": storage.client.client_id,
                "access_token": storage.tokens.access_token,
                "scope": storage.tokens.scope,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
