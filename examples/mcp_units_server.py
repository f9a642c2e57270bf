"""A tiny MCP server (stdio) for example 08: unit conversions. Run by the agent, not by hand."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

FACTORS = {("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("kg", "lb"): 2.204623, ("lb", "kg"): 0.453592}

server = MCPServer("units", instructions="Converts between units of length and mass.")


@server.tool(description="Converts `value` from unit `source` to unit `target` (km, mi, kg, lb).")
def convert(value: float, source: str, target: str) -> str:
    factor = FACTORS.get((source, target))
    if factor is None:
        raise ValueError(f"cannot convert {source} to {target}")
    return f"{value:g} {source} = {value * factor:.1f} {target}"


if __name__ == "__main__":
    server.run("stdio")
