#!/usr/bin/env bash
# fuzz/run.sh MODE SECONDS HARNESS...: run each harness for SECONDS, one after
# the other, and print one line per harness (executions, coverage).
#   MODE ci    seeds fuzz/corpus/<h> and fuzz/regressions/<h>, read only; new
#              inputs go to a scratch directory that is removed afterwards
#   MODE long  the same seeds, new inputs kept in build/fuzz/work/<h> (reused
#              by the next long run)
# A crash, leak, timeout or sanitizer report fails the run (exit 1) after all
# harnesses ran, and the reproducer's path is printed; replay it with
#   build/fuzz/fuzz_<h> <path>       (C harnesses)
#   .venv/bin/python fuzz/fuzz_settings.py <path>   (fuzz_http.py, fuzz_tls.py likewise)
set -uo pipefail
cd "$(dirname "$0")/.."
mode=$1 secs=$2
shift 2
out=build/fuzz
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out/logs" "$out/artifacts"
failed=0
summary=()
for h in "$@"; do
    case $h in
        capture) dict=fuzz/capture.dict maxlen=65536 ;;
        settings) dict=fuzz/settings.dict maxlen=8192 ;;
        http) dict=fuzz/http.dict maxlen=8192 ;;
        tls) dict=fuzz/tls.dict maxlen=8192 ;;
        *) dict=fuzz/tcp.dict maxlen=16384 ;;
    esac
    work=$out/work/$h
    [ "$mode" = ci ] && work=$(mktemp -d "$out/ci-$h.XXXXXX")
    mkdir -p "$work" "$out/artifacts/$h" "fuzz/corpus/$h" "fuzz/regressions/$h"
    log=$out/logs/$mode-$h.log
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 -max_len=$maxlen
          -print_final_stats=1 -artifact_prefix="$out/artifacts/$h/" -dict="$dict"
          "$work" "fuzz/corpus/$h" "fuzz/regressions/$h")
    if [ "$h" = settings ] || [ "$h" = http ] || [ "$h" = tls ]; then
        cmd=("$py" "fuzz/fuzz_$h.py" "${args[@]}")
    else
        cmd=("$out/fuzz_$h" "${args[@]}")
    fi
    echo "== fuzz $h: ${secs}s (log $log)"
    "${cmd[@]}" >"$log" 2>&1
    rc=$?
    execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -aE '^#[0-9]+' "$log" | grep -aE 'cov: ' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*')
    [ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' <<<"$last" | tr -d '#')
    line="fuzz $h: ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}"
    if [ $rc -ne 0 ]; then
        failed=1
        repro=$(grep -aoE 'Test unit written to [^ ]+' "$log" |
                awk '{print $NF}' | tail -1)
        line="$line: FAILED (exit $rc)"
        echo "---- $h: last lines of $log"
        grep -aE 'ERROR|SUMMARY|invariant|injected|Uncaught|Traceback|runtime error|Exception' "$log" | head -8
        if [ -n "$repro" ]; then
            line="$line, reproducer $repro"
            echo "reproducer: $repro"
            grep -am1 '^Base64: ' "$log" || true  # the input itself, for CI logs
        fi
    fi
    echo "$line"
    summary+=("$line")
    [ "$mode" = ci ] && rm -rf "$work"
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit $failed
