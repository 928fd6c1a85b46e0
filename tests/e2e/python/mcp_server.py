"""A minimal MCP server (the MCP Python SDK's FastMCP, streamable HTTP) with one tool, and no authorization of its
own: keymesh's filter in front of it does that.

    mcp_server.py PORT
"""

import sys

from mcp.server.fastmcp import FastMCP

server = FastMCP("keymesh-e2e-orders", host="127.0.0.1", port=int(sys.argv[1]))


@server.tool()
def order_status(order_id: str) -> str:
    """The status of an order."""
    return f"order {order_id}: shipped"


if __name__ == "__main__":
    server.run(transport="streamable-http")
