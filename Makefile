# customer-worker: the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup native native-clean stack stack-down stack-wipe run test check lint typecheck format bench clean

STACK := deploy/local-stack.sh
UV = $(shell deploy/ensure-uv.sh)
# Every command that talks to Kafka or Redis runs with the local stack's environment.
WITH_STACK = eval "$$($(STACK) env)" &&
NATIVE = $(UV) run --frozen python deploy/native.py

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

setup: ## Install the locked dependencies into .venv (uv sync --frozen); compile the domain.
	@$(UV) sync --frozen --quiet
	@$(NATIVE)

native: ## Compile worker.domain with mypyc if a source changed (make setup does it too).
	@$(NATIVE)

native-clean: ## Remove the compiled modules: the worker runs as pure Python.
	@$(NATIVE) --clean

stack: ## Start (or reuse) the local Kafka broker and Redis; create the topics.
	@$(STACK) up

stack-down: ## Stop the local stack (data is kept).
	@$(STACK) down

stack-wipe: ## Stop the local stack and delete its data.
	@$(STACK) wipe

run: setup stack ## Run the worker in the foreground against the local stack.
	@$(WITH_STACK) $(UV) run --frozen customer-worker topics ensure
	@$(WITH_STACK) exec $(UV) run --frozen customer-worker run

test: setup stack check ## Lint, type-check and run the whole test suite against the local stack.
	@$(WITH_STACK) $(UV) run --frozen pytest

check: lint typecheck ## Static checks only.

lint: setup ## ruff (lint and format check).
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .

typecheck: setup ## mypy --strict on worker and contracts.
	@$(UV) run --frozen mypy

format: setup ## Apply ruff's formatting and fixes.
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

bench: setup stack ## Measure throughput and latency (not a test; prints and writes JSON).
	@$(WITH_STACK) $(UV) run --frozen python -m tests.perf

clean: native-clean ## Remove caches and the compiled modules (not the stack).
	rm -rf .pytest_cache .mypy_cache .ruff_cache
