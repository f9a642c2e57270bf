"""The harmony chat format of gpt-oss: typed messages, token-exact rendering, tolerant streaming parsing.

Rendering matches openai-harmony 0.0.8 token for token (tests/agent/test_harmony_differential.py);
the parser never raises and reports what the model got wrong as :class:`Problem` values.
"""

from ossagent.agent.harmony.builtin import browser_namespace, builtin_namespace, python_namespace
from ossagent.agent.harmony.messages import (
    Author,
    ChannelConfig,
    Content,
    Conversation,
    DeveloperContent,
    Message,
    ReasoningEffort,
    ResponseFormat,
    Role,
    SystemContent,
    TextContent,
    TranscriptError,
)
from ossagent.agent.harmony.parser import (
    ContentDelta,
    Event,
    MessageDone,
    MessageStart,
    Problem,
    StreamParser,
    parse_completion,
    parse_header,
)
from ossagent.agent.harmony.render import (
    HarmonyRenderer,
    RenderConversationConfig,
    RenderError,
)
from ossagent.agent.harmony.schema_ts import to_typescript
from ossagent.agent.harmony.tokens import CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START
from ossagent.tools.base import FunctionDescription, ToolDescription

__all__ = [
    "CALL",
    "CHANNEL",
    "CONSTRAIN",
    "END",
    "MESSAGE",
    "RETURN",
    "START",
    "Author",
    "ChannelConfig",
    "Content",
    "ContentDelta",
    "Conversation",
    "DeveloperContent",
    "Event",
    "FunctionDescription",
    "HarmonyRenderer",
    "Message",
    "MessageDone",
    "MessageStart",
    "Problem",
    "ReasoningEffort",
    "RenderConversationConfig",
    "RenderError",
    "ResponseFormat",
    "Role",
    "StreamParser",
    "SystemContent",
    "TextContent",
    "ToolDescription",
    "TranscriptError",
    "browser_namespace",
    "builtin_namespace",
    "parse_completion",
    "parse_header",
    "python_namespace",
    "to_typescript",
]
