"""Model Context Protocol servers as tool namespaces (the official ``mcp`` SDK).

:class:`MCPServerConfig` says how to reach a server (a command over stdio, sandboxed by default, or a streamable
HTTP URL); :class:`MCPTool` is the :class:`~ossagent.tools.base.Tool` that shows the server's tools to the model
as one harmony namespace, with the descriptions made inert (:mod:`ossagent.agent.mcp.text`) and the arguments
grammar-constrained from each tool's input schema.
"""

from ossagent.agent.mcp.config import MCPServerConfig, load_config, parse_spec
from ossagent.agent.mcp.tool import MCPTool, connect

__all__ = ["MCPServerConfig", "MCPTool", "connect", "load_config", "parse_spec"]
