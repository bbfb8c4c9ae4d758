# One command per job. `make demo` and `make test` work from a clean clone:
# they create the virtual environment and install what the project needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SYSSTAMP := $(VENV)/.system-packages
NETWORK ?= solo

.PHONY: demo test check lint types bench soak clean system screenshots

$(STAMP): pyproject.toml setup.py src/sharechain/crypto/_sha256x.c src/sharechain/crypto/_tokens.c src/sharechain/crypto/_sha256_tables.h src/sharechain/_cborx.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# pycanon (the tests' second k/l implementation) pins exact versions of typer and
	# typing-extensions that conflict with ours; it needs only numpy and pandas.
	$(BIN)/pip install -q --no-deps 'pycanon>=1.3'
	touch $(STAMP)

# System packages the tests and the launcher use (etcd for the replicated
# ordering service, libsodium for the ristretto255 group, chromium for the
# console's browser tests, driven by Playwright: never `playwright install`).
# Installed only when missing; we run as root here.
$(SYSSTAMP): | $(STAMP)
	@if ! command -v etcd >/dev/null 2>&1; then \
		echo "installing etcd-server (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; \
	fi
	@if ! ldconfig -p | grep -q libsodium.so; then \
		echo "installing libsodium23 (Debian package, ristretto255 for PSI and range proofs)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsodium23 >/dev/null; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing chromium (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	touch $(SYSSTAMP)

system: $(SYSSTAMP)

demo: $(STAMP) $(SYSSTAMP)
	$(BIN)/python -m sharechain.demo --network $(NETWORK)

# Two workers, whole files to each (a file's module fixtures, e.g. a 3-node
# network, start once): most tests wait on processes, sockets and disks. A third
# worker fills some of that time (12:25 and 14:51 against 14:23 with two), but the
# tests that restart nodes under load or flood one then failed beside it.
# A run takes 12-15 minutes; one still running after 45 is interrupted, so that
# pytest prints what failed instead of being cut off by CI's limit without a word
# (a stuck test is ended sooner, by pytest-timeout: pyproject.toml).
test: $(STAMP) $(SYSSTAMP)
	timeout --signal=INT --kill-after=60 2700 \
		$(BIN)/pytest -m "not soak" -p no:cacheprovider -n 2 --dist loadfile --durations=25

# Soak tests run for minutes by design (the longest sets its own pytest-timeout): no
# faulthandler dump at 240 s; without xdist, pytest-timeout's dump is shown.
soak: $(STAMP) $(SYSSTAMP)
	$(BIN)/pytest -m soak -p no:cacheprovider -o faulthandler_timeout=0

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

bench: $(STAMP) $(SYSSTAMP)
	$(BIN)/python -m sharechain.bench

# The console's pages, photographed in chromium on a small demo chain, into docs/img/.
screenshots: $(STAMP) $(SYSSTAMP)
	$(BIN)/python tests/web/screenshots.py docs/img

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build
	rm -f src/sharechain/crypto/_sha256x*.so src/sharechain/crypto/_tokens*.so src/sharechain/_cborx*.so
