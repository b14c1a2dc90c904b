# tests/lib.sh - what the shell tests share (sourced by tests/test_*.sh):
# counters and check(), and the check that the tools a test needs exist.
pass=0
fail=0
check() { # check NAME COMMAND...: one case
    local name=$1
    shift
    if "$@"; then
        pass=$((pass + 1))
        if [ -n "${TEST_VERBOSE:-}" ]; then echo "ok   $name" >&2; fi
    else
        fail=$((fail + 1))
        echo "FAIL $name" >&2
    fi
}
need_tools() { # need_tools TEST TOOL...: fails the test (one failure) when a tool is missing
    local test=$1 t
    shift
    for t in "$@"; do
        if ! command -v "$t" >/dev/null; then
            echo "FAIL $test needs $* (scripts/deps.sh installs them)" >&2
            echo "0 passed, 1 failed"
            exit 1
        fi
    done
}
