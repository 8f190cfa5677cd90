# Lightbox: two commands. `make run` serves a real portal; `make test` runs the whole suite on both backends.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test test-sqlite test-postgres test-s3 install install-test chromium services demo lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable install: migrations/ and piccolo_conf.py live beside the package. The Python client too: the
# remote CLI (`lightbox --url …`) runs through it.
$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e . -e ./clients/python
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/lightbox migrate
	$(BIN)/lightbox demo
	$(BIN)/lightbox serve --host 127.0.0.1 --port 8000 --workers 2

# Debian's chromium drives Playwright (Playwright cannot download its own browsers here);
# dcmtk's storescu/findscu/movescu/getscu/storescp are the real DICOM peers of the networking tests;
# Orthanc (with its DICOMweb plugin) is the peer archive of the send and DICOMweb sync tests.
chromium:
	@(command -v chromium && command -v storescu && command -v Orthanc && \
		test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so) >/dev/null || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium dcmtk orthanc orthanc-dicomweb)

# PostgreSQL and Redis for the second test run; started when they are not running.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /tmp
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done

# The backends run side by side (their databases, queues, buckets, data dirs and ports are their own): much
# of the suite waits on live servers, browsers and quiet periods, so the runs share the 2 cores well. Each
# run's output is printed whole when it ends.
test: install-test chromium services
	$(MAKE) -j3 --output-sync=target test-sqlite test-postgres test-s3

test-sqlite: install-test
	$(BIN)/python -m pytest -q

# A fresh database per run is created (and dropped) by tests/conftest.py from this server URL.
test-postgres: install-test
	LIGHTBOX_TEST_DATABASE_URL=$(PG_URL) LIGHTBOX_TEST_QUEUE_URL=$(REDIS_URL) $(BIN)/python -m pytest -q

# The third combination, PostgreSQL + Redis + S3: the tests of what goes through the storage seam (ingest,
# WADO, export, delete, AI assets, migration, the start-up sweep, the many-process deployment, the Python
# client's direct downloads), with files in moto's S3 server (started by tests/conftest.py on a free port;
# the wire protocol is real).
S3_TESTS := tests/api/test_storage.py tests/api/test_entry_points.py tests/api/test_ingest_batching.py \
	tests/api/test_dicomweb.py tests/api/test_wado_uri_and_rendered.py tests/api/test_export_download.py \
	tests/api/test_exchange.py tests/api/test_cad4tb_v1.py tests/api/test_housekeeping.py \
	tests/api/test_inference.py tests/api/test_ai_dicom_results.py tests/api/test_deployment.py \
	tests/api/test_python_client.py tests/api/test_volumes.py
test-s3: install-test
	LIGHTBOX_TEST_STORAGE=s3 LIGHTBOX_TEST_DATABASE_URL=$(PG_URL) LIGHTBOX_TEST_QUEUE_URL=$(REDIS_URL) \
		$(BIN)/python -m pytest -q $(S3_TESTS)
