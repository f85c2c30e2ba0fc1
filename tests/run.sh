#!/usr/bin/env bash
# Installs everything the test suite needs, lints (ruff) and type-checks (mypy) the tree, then runs
# the suite with coverage. Fails when any of them fails. Used as is by .ci/run.
#   Debian packages: network test hosts (iproute2), reference tools (fping, ping), a DNS server
#   (dnsmasq), a session bus (dbus-daemon, for desktop alerts), a UPS server (Network UPS
#   Tools), InfluxDB 1.6.7 and VictoriaMetrics (the v1 and v2 write paths), iperf3 (the
#   throughput reference), chromium (renders the HTML reports; Playwright drives it and never
#   downloads a browser) with an Urdu font (fonts-sil-scheherazade) so city names render in the
#   screenshots, systemd (systemd-analyze reads the service units; it is not started). Python:
#   the project and its test extras in .venv. Node.js (from Debian when npm is missing) with
#   TypeScript and @grafana/schema from npm, to type-check the dashboards.
# Namespace tests need root; without it they skip with the reason (they never pass silently).
set -euo pipefail
cd "$(dirname "$0")/.."

# The suite (pytest), in two parts when no argument is given. The files whose tests bound what they
# time to a fraction of a second or a rate to a few per cent (a probe's wait, a shaped link's rate:
# marker `serial`) run alone; the rest run on LINEWATCH_TEST_WORKERS pytest-xdist workers (2),
# a file to a worker (--dist loadfile: each file's servers start once). Most tests wait on servers,
# namespaces and clocks, not on the CPU: on 2 cores the two parts take about two thirds of one
# serial run. Arguments (a file, -k EXPR, ...) run pytest once with them, serially.
# pytest exits 5 when it collected no tests: each part passes that on as a failure too.
# Coverage of kit, agent and collector is reported at the end ([tool.coverage] in pyproject.toml),
# counting the Python processes the tests start as well (`linewatch run` in a namespace, the CLIs).
# A bare --cov takes its sources from pyproject.toml; it must not be followed by a path (it would
# take it as its source), hence the report option after it.
suite() {
    # LINEWATCH_TEST_PYTHON: the interpreter that runs pytest (tests/test_runner.py gives a stub)
    local py=${LINEWATCH_TEST_PYTHON:-.venv/bin/python} report=(--cov-report=term-missing:skip-covered)
    if [ $# -gt 0 ]; then
        exec "$py" -m pytest --cov "${report[@]}" "$@"
    fi
    local first=0 second=0
    echo "tests: every file but the timing ones, ${LINEWATCH_TEST_WORKERS:-2} at a time"
    "$py" -m pytest -n "${LINEWATCH_TEST_WORKERS:-2}" --dist loadfile -m "not serial" --cov \
        --cov-report= || first=$?
    # interrupted (Ctrl-C), an internal error or a usage error: the timing ones are not started
    if [ "$first" -ge 2 ] && [ "$first" -le 4 ]; then
        echo "tests: stopped (pytest exit $first); the timing ones were not run"
        exit "$first"
    fi
    echo "tests: the timing ones (marker serial), alone"
    "$py" -m pytest -m serial --cov --cov-append "${report[@]}" || second=$?
    [ "$first" -ne 0 ] && exit "$first"
    exit "$second"
}
if [ "${1:-}" = "--suite" ]; then   # run.sh calls itself so inside the namespace below
    shift
    suite "$@"
fi

DEBS=(iproute2 iputils-ping fping dnsmasq-base openssl openvpn wireguard-go wireguard-tools dnsdist dbus-daemon procps nut-server nut-client influxdb victoria-metrics iperf3 chromium fonts-sil-scheherazade systemd)
missing=()
for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

# The linter and the type checker first: they take seconds and fail before the long suite starts.
# ruff lints the whole tree (rules in pyproject.toml, [tool.ruff]); mypy checks the pure cores
# strictly (the files in [tool.mypy]).
echo "lint: ruff check"
.venv/bin/python -m ruff check --quiet --output-format=concise .
echo "type check: mypy"
.venv/bin/python -m mypy

# Node.js and the pinned TypeScript compiler and Grafana schema (tests/grafana/package-lock.json),
# which type-check the dashboards against Grafana's own models.
if ! command -v npm >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: nodejs npm"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
npm ci --prefix tests/grafana --no-audit --no-fund --ignore-scripts --loglevel=error

# The suite runs in a network namespace of its own, holding only loopback and a veth pair (for
# the interface-counter tests): the tests' servers, namespace labs and browser work as before,
# and nothing a test sends can leave this machine, whatever its config says. Without root or
# unshare (the namespace tests skip then anyway) it runs as it is.
if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
    echo "running the tests in a network namespace of their own (nothing they send leaves this machine)"
    exec unshare -n bash -c 'ip link set lo up && ip link add lwtest0 type veth peer name lwtest1 \
        && ip link set lwtest0 up && ip link set lwtest1 up && exec bash tests/run.sh --suite "$@"' _ "$@"
fi
suite "$@"
