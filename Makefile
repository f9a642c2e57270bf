# The two commands of the README: `make demo` (the main job) and `make test` (the suite CI runs).
.PHONY: demo test check bootstrap clean

bootstrap:
	@scripts/bootstrap.sh

# A real agent task end to end (sandboxed Python over a CSV). With a checkpoint configured
# (OSSAGENT_MODEL, or `ossagent download openai/gpt-oss-20b`) the model runs it; without one the example
# says how to get one and replays a scripted model through the same loop and tools.
demo: bootstrap
	.venv/bin/ossagent doctor || true
	.venv/bin/python examples/02_code_assistant.py

test: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy agent tools sandbox
	.venv/bin/python -m pytest

check: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy agent tools sandbox

clean:
	rm -rf .venv build *.egg-info
