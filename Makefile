# Every target works on a fresh clone with Python 3.11+ and make: the first one run creates
# .venv and installs the pinned requirements; later runs reinstall only when they change.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

# The tools that must not meet the app's requirements (the client generator, the docs site,
# deploy/check_k8s.sh's checkers) get virtualenvs of their own inside .venv. .venv may be a
# symbolic link that clones share (scaffold/walkthrough.sh, scaffold/rename_check.sh), and the
# #! line of every script pip installs names the interpreter pip ran under: made through a
# clone's link, it would point into the clone, gone once the clone is deleted. So each one is
# created and installed into through .venv's real path, and its tools run as
# `<venv>/bin/python -m <tool>`, which needs no script at all (so an older virtualenv made
# through a clone keeps working too).
# $(call tool_venv,<folder under .venv>,<pinned requirements file>)
define tool_venv
	@mkdir -p $(VENV)
	@test -x $(VENV)/$(1)/bin/python || $(PYTHON) -m venv "$$(realpath $(VENV))/$(1)"
	"$$(realpath $(VENV))/$(1)/bin/python" -m pip install --disable-pip-version-check -q -r $(2)
endef

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# Through .venv's real path: see tool_venv above.
	"$$(realpath $(VENV))/bin/python" -m pip install --disable-pip-version-check -q -r requirements-dev.txt
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
dev: $(STAMP) .env ## Migrate, create the first superuser, serve with hot reload on PORT (8000) and a job worker
	$(BIN)/python manage.py migrate
	$(BIN)/python manage.py superuser
	@# The worker runs beside the server; Ctrl-C stops the server, and the trap stops the
	@# worker (SIGTERM: it finishes its jobs first). On SQLite it only waits: jobs run inside
	@# the server there. The app logs each request once, with its id (core/observability/logging.py), so
	@# uvicorn's own access line would only repeat it.
	@$(BIN)/python manage.py worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT; \
	$(BIN)/uvicorn main:app --reload --no-access-log --host 127.0.0.1 --port $(PORT)

.PHONY: worker
worker: $(STAMP) ## Run background jobs until Ctrl-C / SIGTERM (PostgreSQL; see JOBS_* settings)
	$(BIN)/python manage.py worker

.PHONY: jobs
jobs: $(STAMP) ## List the newest jobs; failed ones: make jobs ARGS="list --status failed"
	$(BIN)/python manage.py jobs $(or $(ARGS),list)

.PHONY: test
test: $(STAMP) oidc-provider ## Run the tests (PostgreSQL when TEST_DATABASE_URL is set, else SQLite)
	$(BIN)/pytest $(PYTEST_ARGS)

# The OpenID Connect provider the OIDC tests sign in against (tests/oidc/provider: panva's
# oidc-provider, pinned by its lockfile), run by the machine's Node.js. Without npm the OIDC
# tests are skipped, and fail under CI=true, as the clients' tests do.
OIDC_PROVIDER := tests/oidc/provider
OIDC_PROVIDER_STAMP := $(OIDC_PROVIDER)/node_modules/.installed

$(OIDC_PROVIDER_STAMP): $(OIDC_PROVIDER)/package.json $(OIDC_PROVIDER)/package-lock.json
	cd $(OIDC_PROVIDER) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: oidc-provider
oidc-provider: ## Install the test OpenID provider's Node packages (make test runs it; needs npm)
	@if command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(OIDC_PROVIDER_STAMP); \
	else \
		echo "npm not found: the OIDC tests will be skipped (install Node.js 20.19+ and npm)"; \
	fi

.PHONY: lint
lint: $(STAMP) ## ruff check, ruff format --check, import contracts, squawk over the migrations' SQL
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m migrations.lint

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
	@# Autogenerate compares the models with the database, so the database is brought to the
	@# latest migration first (on a fresh clone it does not exist yet).
	$(BIN)/python manage.py migrate
	$(BIN)/alembic revision --autogenerate -m "$(m)"

.PHONY: feature
feature: $(STAMP) ## Scaffold features/<name> and its tests, regenerate clients/: make feature name=widgets
	@test -n "$(name)" || { echo 'usage: make feature name=widgets (plural snake_case)'; exit 2; }
	$(BIN)/python -m scaffold "$(name)"
	@# The new routes are part of the API the committed clients describe: regenerate them now,
	@# or the clients tests (and CI) report clients/ as stale.
	@if command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory client || { \
			echo "features/$(name) is written, clients/ is not: fix the above, then 'make client'"; \
			exit 1; }; \
		echo "clients/ regenerated with the new routes: commit it with the feature"; \
	else \
		echo "clients/ not regenerated (needs Node.js 20.19+ and npm): run 'make client'"; \
	fi

.PHONY: rename
rename: $(STAMP) ## Once, first: give the project your name: make rename name=<project-name> [title="<Title>"]
	@# name and title reach the command through the environment, never through the shell's
	@# parsing of the recipe, so whatever they hold is only ever a value to check.
	@test -n "$$name" || { echo 'usage: make rename name=<project-name> [title="<Title>"]'; exit 2; }
	$(BIN)/python -m scaffold.rename "$$name" $${title:+--title "$$title"}
	@# The clients carry the name (package names, the OpenAPI title): regenerate them now.
	@if command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory client || { \
			echo "renamed, but clients/ is not regenerated: fix the above, then 'make client'"; \
			exit 1; }; \
		echo "clients/ regenerated under the new name: review 'git status' and commit"; \
	else \
		echo "clients/ not regenerated (needs Node.js 20.19+ and npm): run 'make client'"; \
	fi

.PHONY: superuser
superuser: $(STAMP) ## Create FIRST_SUPERUSER_EMAIL unless it exists
	$(BIN)/python manage.py superuser

.PHONY: bench
bench: $(STAMP) ## Benchmark against a bare FastAPI app (needs PostgreSQL and wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

.PHONY: bench-cpu
bench-cpu: $(STAMP) ## CPU per /users/me request in-process (token, API key); AGAINST=<checkout> compares
	$(BIN)/python bench/cpu.py $(if $(AGAINST),--against $(AGAINST))

# --- API clients: `make client` -----------------------------------------------------------
# Regenerates clients/ from the app's OpenAPI document (no server, no database): the document
# itself, the TypeScript client (@hey-api/openapi-ts, from clients/typescript's lockfile, run
# by the machine's Node.js) and the Python client (openapi-python-client, in a virtualenv of
# its own so its dependencies never meet the app's; its post-hooks run the `ruff` first on
# PATH, which is made its own). CI runs it and fails on any diff.
CLIENT_GENERATOR := $(VENV)/client-generator
CLIENT_GENERATOR_STAMP := $(CLIENT_GENERATOR)/.installed
TS_CLIENT := clients/typescript
TS_CLIENT_STAMP := $(TS_CLIENT)/node_modules/.installed

$(CLIENT_GENERATOR_STAMP): clients/requirements-python-generator.txt | $(STAMP)
	$(call tool_venv,client-generator,$<)
	@touch $@

$(TS_CLIENT_STAMP): $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	@command -v npm >/dev/null || { echo "make client needs Node.js 20.19+ and npm"; exit 1; }
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: client
client: $(STAMP) $(CLIENT_GENERATOR_STAMP) $(TS_CLIENT_STAMP) ## Regenerate the API clients in clients/ (TypeScript, Python)
	$(BIN)/python -m clients.export_openapi clients/openapi.json
	cd $(TS_CLIENT) && node_modules/.bin/openapi-ts --silent
	PATH="$(abspath $(CLIENT_GENERATOR))/bin:$$PATH" $(CLIENT_GENERATOR)/bin/python \
		-m openapi_python_client generate --path clients/openapi.json \
		--config clients/python-client.yaml --meta uv \
		--output-path clients/python --overwrite --fail-on-warning
	@rm -rf clients/python/.ruff_cache
# --- end of API clients --------------------------------------------------------------------

# --- Documentation site: `make docs` --------------------------------------------------------
# docs/ is a MkDocs Material site (mkdocs.yml holds its navigation). Its tools are pinned in
# requirements-docs.txt, in a virtualenv of their own, so they never meet the app's. CI runs
# `make docs-build`: strict, so a broken link or anchor between pages, or a page left out of
# the navigation, fails it. Material 9.x prints at every build that it reaches end of life on
# 5 May 2027 (Zensical, by the same team, reads this mkdocs.yml): known, so not repeated.
DOCS_VENV := $(VENV)/docs
DOCS_ENV := NO_MKDOCS_2_WARNING=1
DOCS_STAMP := $(DOCS_VENV)/.installed
DOCS_PORT ?= 8001

$(DOCS_STAMP): requirements-docs.txt
	$(call tool_venv,docs,$<)
	@touch $@

.PHONY: docs
docs: $(DOCS_STAMP) ## Serve the documentation site with live reload on DOCS_PORT (8001)
	$(DOCS_ENV) $(DOCS_VENV)/bin/python -m mkdocs serve --livereload --dev-addr 127.0.0.1:$(DOCS_PORT)

.PHONY: docs-build
docs-build: $(DOCS_STAMP) ## Build the documentation site into site/, strictly (what CI runs)
	$(DOCS_ENV) $(DOCS_VENV)/bin/python -m mkdocs build --strict
# --- end of documentation site -------------------------------------------------------------

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
check-deploy: $(STAMP) ## Check Dockerfile, compose, CI workflow, Kubernetes manifests, Prometheus/Grafana files, nginx (no Docker)
	bash deploy/check_static.sh

.PHONY: clean
clean: ## Remove the virtualenv, caches and the local SQLite database
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache app.db* site
