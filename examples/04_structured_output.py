"""04 - Structured output: the final answer follows a pydantic model and comes back typed.

With the local engine the final channel is grammar-constrained, so the JSON always validates.
Run: python examples/04_structured_output.py
"""

from __future__ import annotations

from pydantic import BaseModel

from ossagent.agent.backends.factory import example_backend
from ossagent.agent.loop import Agent, RunResult


class Recipe(BaseModel):
    """A recipe with its ingredients."""

    name: str
    servings: int
    ingredients: list[str]


SCRIPT = [
    "<|channel|>analysis<|message|>A simple pancake recipe.<|end|><|start|>assistant<|channel|>final"
    '<|message|>{"name":"Pancakes","servings":4,"ingredients":["flour","milk","eggs","butter"]}<|return|>',
]


def main(use_model: bool = True) -> RunResult:
    backend, _ = example_backend(SCRIPT, use_model=use_model)
    result = Agent(backend, response_format=Recipe, reasoning="low").run("Give me a pancake recipe for 4.")
    recipe = result.output
    print(type(recipe).__name__, recipe)
    return result


if __name__ == "__main__":
    main()
