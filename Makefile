# Every target works on a fresh clone with Python 3.11+ and make: the first one run creates
# .venv and installs the pinned requirements; later runs reinstall only when they change.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@

.env:
	$(BIN)/python manage.py init-env

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk -F':.*## ' '{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: install
install: $(STAMP) ## Create .venv and install the pinned requirements

.PHONY: dev
dev: $(STAMP) .env ## Migrate, create the first superuser, serve with hot reload on PORT (8000)
	$(BIN)/python manage.py migrate
	$(BIN)/python manage.py superuser
	$(BIN)/uvicorn main:app --reload --host 127.0.0.1 --port $(PORT)

.PHONY: test
test: $(STAMP) ## Run the tests (PostgreSQL when TEST_DATABASE_URL is set, else SQLite)
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff check, ruff format --check, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

.PHONY: format
format: $(STAMP) ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: typecheck
typecheck: $(STAMP) ## mypy --strict over the project
	$(BIN)/mypy .

.PHONY: audit
audit: $(STAMP) ## Known-vulnerability check of the pinned runtime requirements (needs network)
	$(BIN)/pip-audit -r requirements.txt --strict --ignore-vuln GHSA-wj6h-64fc-37mp

.PHONY: migrate
migrate: $(STAMP) ## Apply the migrations to DATABASE_URL
	$(BIN)/python manage.py migrate

.PHONY: migration
migration: $(STAMP) ## Autogenerate a migration: make migration m="add widgets"
	@test -n "$(m)" || { echo 'usage: make migration m="what it does"'; exit 1; }
	$(BIN)/alembic revision --autogenerate -m "$(m)"

.PHONY: feature
feature: $(STAMP) ## Scaffold features/<name> and its tests: make feature name=widgets
	@test -n "$(name)" || { echo 'usage: make feature name=widgets (plural snake_case)'; exit 2; }
	$(BIN)/python -m scaffold "$(name)"

.PHONY: superuser
superuser: $(STAMP) ## Create FIRST_SUPERUSER_EMAIL unless it exists
	$(BIN)/python manage.py superuser

.PHONY: bench
bench: $(STAMP) ## Benchmark against a bare FastAPI app (needs PostgreSQL and wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

SCALE ?= 1

.PHONY: up
up: ## Start the production-like stack on HTTP_PORT (8080); make up SCALE=3 for 3 replicas
	docker compose -f compose.yml up --build --detach --scale web=$(SCALE)

.PHONY: down
down: ## Stop the docker compose stack (the database volume is kept)
	docker compose -f compose.yml down

.PHONY: logs
logs: ## Follow the docker compose logs
	docker compose -f compose.yml logs --follow --tail=100

.PHONY: check-deploy
check-deploy: $(STAMP) ## Check Dockerfile, compose files, CI workflow, Prometheus/Grafana files, nginx config
	bash deploy/check_static.sh

.PHONY: clean
clean: ## Remove the virtualenv, caches and the local SQLite database
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache app.db*
