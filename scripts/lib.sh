# shellcheck shell=bash
# Functions shared by the project's scripts (scripts/demo, scripts/test...). Source it:
#
#     . "$(dirname "$0")/lib.sh"
#     envclone_standin_start          # also makes sure the virtualenv is there
#     trap envclone_standin_stop EXIT
#
# envclone_ensure_venv     create/update <repo>/.venv from scripts/requirements.txt
# envclone_standin_start   start the local AWS stand-in (scripts/standin.py) on a free port and
#                          point the AWS SDKs at it through the environment
# envclone_standin_stop    stop it (safe to call twice, or when it never started)
#
# Knobs: ENVCLONE_STANDIN_TIMEOUT (seconds to wait for start, default 60),
#        ENVCLONE_STANDIN_RDS_DELAY (seconds an RDS status change takes, default 2.0),
#        ENVCLONE_STANDIN_QUIET=1 (no per-request lines in the stand-in's log),
#        ENVCLONE_PYTHON (the python3 used to create the virtualenv, default python3).

ENVCLONE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENVCLONE_VENV="$ENVCLONE_ROOT/.venv"

_envclone_say() { printf 'envclone: %s\n' "$*" >&2; }

_envclone_requirements_hash() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$ENVCLONE_ROOT/scripts/requirements.txt" | cut -d' ' -f1
    else
        "${ENVCLONE_PYTHON:-python3}" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' \
            "$ENVCLONE_ROOT/scripts/requirements.txt"
    fi
}

# Creates or updates the virtualenv. Fast (one hash comparison) when it matches
# scripts/requirements.txt already; otherwise installs from PyPI.
envclone_ensure_venv() {
    local req="$ENVCLONE_ROOT/scripts/requirements.txt" stamp="$ENVCLONE_VENV/.requirements.sha256"
    local want
    want="$(_envclone_requirements_hash)" || return 1
    if [ -x "$ENVCLONE_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    (
        # One installer at a time when several scripts start together.
        if command -v flock >/dev/null 2>&1; then
            mkdir -p "$ENVCLONE_VENV" && exec 9>"$ENVCLONE_VENV/.lock" && flock 9
        fi
        [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$ENVCLONE_VENV/bin/python" ] && exit 0
        local py="${ENVCLONE_PYTHON:-python3}"
        command -v "$py" >/dev/null 2>&1 || { _envclone_say "$py not found: install Python 3.9+"; exit 1; }
        if [ ! -x "$ENVCLONE_VENV/bin/python" ]; then
            _envclone_say "creating $ENVCLONE_VENV"
            # Debian's python3 lacks ensurepip without the python3-venv package: then make the
            # venv without pip and let the system's pip install into it.
            if ! "$py" -m venv "$ENVCLONE_VENV" >/dev/null 2>&1; then
                rm -rf "${ENVCLONE_VENV:?}/bin" "${ENVCLONE_VENV:?}/lib" "${ENVCLONE_VENV:?}/lib64" "${ENVCLONE_VENV:?}/pyvenv.cfg"
                "$py" -m venv --without-pip "$ENVCLONE_VENV" || exit 1
            fi
        fi
        _envclone_say "installing scripts/requirements.txt into $ENVCLONE_VENV"
        if "$ENVCLONE_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
            "$ENVCLONE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" || exit 1
        else
            "$py" -m pip --python "$ENVCLONE_VENV/bin/python" install --quiet --disable-pip-version-check -r "$req" || exit 1
        fi
        printf '%s\n' "$want" >"$stamp"
    ) || { _envclone_say "could not set up $ENVCLONE_VENV"; return 1; }
}

# Starts the stand-in in the background and exports what the AWS SDKs (and envclone) need to
# use it. Several may run at once (each shell or subshell its own), each on its own port with
# its own log file under a temporary directory ($ENVCLONE_STANDIN_DIR).
envclone_standin_start() {
    if [ -n "${ENVCLONE_STANDIN_PID:-}" ] && [ "${_ENVCLONE_STANDIN_OWNER:-}" = "$BASHPID" ] \
        && kill -0 "$ENVCLONE_STANDIN_PID" 2>/dev/null; then
        _envclone_say "a stand-in is already running here (pid $ENVCLONE_STANDIN_PID); call envclone_standin_stop first"
        return 1
    fi
    envclone_ensure_venv || return 1
    # $BASHPID read inside the background command below would be the child's own pid.
    local dir timeout="${ENVCLONE_STANDIN_TIMEOUT:-60}" pid port="" waited=0 shell_pid="$BASHPID"
    # Fake credentials and no profile from here on, for the stand-in and for what this shell
    # runs next: nothing may reach real AWS.
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN \
        AWS_IGNORE_CONFIGURED_ENDPOINT_URLS \
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    # No shared config or credentials file can add a profile, role or SSO session.
    export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
    export AWS_EC2_METADATA_DISABLED=true
    dir="$(mktemp -d "${TMPDIR:-/tmp}/envclone-standin.XXXXXX")" || return 1
    "$ENVCLONE_VENV/bin/python" "$ENVCLONE_ROOT/scripts/standin.py" \
        --port 0 --port-file "$dir/port" --parent-pid "$shell_pid" >"$dir/log" 2>&1 </dev/null &
    pid=$!
    # The port file appears once the server listens; poll every 0.1 s.
    while [ ! -s "$dir/port" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            _envclone_say "the stand-in exited during start; the end of its log ($dir/log):"
            tail -n 40 "$dir/log" >&2
            return 1
        fi
        if [ "$waited" -ge $((timeout * 10)) ]; then
            _envclone_say "the stand-in did not get ready within ${timeout}s; the end of its log ($dir/log):"
            tail -n 40 "$dir/log" >&2
            kill "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    port="$(cat "$dir/port")"

    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    export ENVCLONE_STANDIN_PID="$pid" ENVCLONE_STANDIN_URL="http://127.0.0.1:$port"
    export ENVCLONE_STANDIN_DIR="$dir" ENVCLONE_STANDIN_LOG="$dir/log"
    _ENVCLONE_STANDIN_OWNER="$shell_pid"

    if ! _envclone_http_ok "$ENVCLONE_STANDIN_URL/envclone-standin/ready"; then
        _envclone_say "the stand-in on port $port does not answer; the end of its log:"
        tail -n 40 "$dir/log" >&2
        envclone_standin_stop
        return 1
    fi
}

_envclone_http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 10 "$1"
    else
        "$ENVCLONE_VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)' "$1"
    fi
}

# Stops the stand-in started by envclone_standin_start in this shell and removes its files.
# Keeps the fake credentials exported, so nothing run afterwards reaches real AWS by accident.
envclone_standin_stop() {
    local pid="${ENVCLONE_STANDIN_PID:-}" dir="${ENVCLONE_STANDIN_DIR:-}" waited=0
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 50 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            _envclone_say "the stand-in (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    fi
    # Only ever remove a directory this file created.
    case "$dir" in
        */envclone-standin.*) rm -rf "$dir" ;;
    esac
    unset ENVCLONE_STANDIN_PID ENVCLONE_STANDIN_URL ENVCLONE_STANDIN_DIR ENVCLONE_STANDIN_LOG \
        AWS_ENDPOINT_URL _ENVCLONE_STANDIN_OWNER
    return 0
}
