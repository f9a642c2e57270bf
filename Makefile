# The two commands of the README: `make demo` (the main job) and `make test` (the suite CI runs).
.PHONY: demo test check bootstrap clean

bootstrap:
	@scripts/bootstrap.sh

# The main job: a real multi-step agent task (the model writes python, the sandbox runs it, the model reads the
# output and answers) in a fresh workspace, on the configured model (OSSAGENT_MODEL, or
# `ossagent download openai/gpt-oss-20b`), else on the built-in demo model when the checkout carries one
# (model/demo_weights, which ships: a tiny gpt-oss trained by scripts/demo/train.py). Then the CSV
# example: with no model it replays a scripted model through the same loop, grammar and sandbox.
demo: bootstrap
	.venv/bin/ossagent doctor || true
	-.venv/bin/ossagent run --workspace "$$(mktemp -d)" --tools python "What is (973 - 61) * 657?"
	.venv/bin/python examples/02_code_assistant.py

test: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy agent tools sandbox model
	.venv/bin/python -m pytest

check: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy agent tools sandbox model

clean:
	rm -rf .venv build *.egg-info
