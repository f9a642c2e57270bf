# The two commands of the README: `make demo` (the main job) and `make test` (the suite CI runs).
.PHONY: demo test check bootstrap clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/ossagent doctor || true

test: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy agent tools sandbox
	.venv/bin/python -m pytest

check: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy agent tools sandbox

clean:
	rm -rf .venv build *.egg-info
