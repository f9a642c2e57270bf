"""05 - Function calling with Python callables, and a function the caller runs itself.

``get_stock`` runs inside the loop; ``place_order`` has no implementation, so the run stops and hands the
call to us; we run it and resume the same conversation with its output.
Run: python examples/05_function_calling.py
"""

from __future__ import annotations

import json

from ossagent.agent.backends.factory import example_backend
from ossagent.agent.functions import FunctionTool
from ossagent.agent.loop import Agent, RunResult

STOCK = {"widget": 12, "gadget": 0}

SCRIPT = [
    "<|channel|>analysis<|message|>Check stock first.<|end|><|start|>assistant to=functions.get_stock"
    '<|channel|>commentary <|constrain|>json<|message|>{"item":"widget"}<|call|>',
    "<|channel|>analysis<|message|>12 in stock; order 3.<|end|><|start|>assistant to=functions.place_order"
    '<|channel|>commentary <|constrain|>json<|message|>{"item":"widget","quantity":3}<|call|>',
    "<|channel|>final<|message|>Ordered 3 widgets (order A-17); 9 remain in stock.<|return|>",
]


def get_stock(item: str) -> dict[str, int | str]:
    """How many units of an item are in stock.

    Args:
        item: the item's name
    """
    return {"item": item, "units": STOCK.get(item, 0)}


PLACE_ORDER = FunctionTool.from_schema(
    "place_order",
    {"type": "object", "properties": {"item": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
     "required": ["item", "quantity"]},
    "Place an order (runs in the caller's system).",
)


def main(use_model: bool = True) -> RunResult:
    backend, _ = example_backend(SCRIPT, use_model=use_model)
    agent = Agent(backend, functions=[get_stock, PLACE_ORDER], reasoning="low")
    result = agent.run("Order 3 widgets if we have them.")
    while result.stop_reason == "tool_calls":
        call = result.tool_calls[0]
        args = json.loads(call.arguments)
        print(f"the model asks us to run {call.function_name}({args})")
        output = json.dumps({"order_id": "A-17", "item": args["item"], "quantity": args["quantity"]})
        result = agent.run(transcript=result.transcript, tool_outputs=[(call.recipient, output)])
    print(result.text)
    return result


if __name__ == "__main__":
    main()
