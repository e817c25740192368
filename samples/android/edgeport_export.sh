#!/usr/bin/env bash
# Gradle step of the Android sample: export the model with edgeport, check it against its budgets
# and install the .tflite, its labels and the report into the app's assets. A breached budget
# fails the build.
#
# The app's `edgeportExport` task (app/build.gradle.kts) runs this script before every build;
# CI runs it directly, with the same command line, without Gradle:
#     EDGEPORT=.venv/bin/edgeport samples/android/edgeport_export.sh [ASSETS_DIR]
#
# Argument / environment (all optional):
#   $1 or EDGEPORT_ASSETS  assets folder the files are installed into (default
#                        app/src/main/assets under the Gradle project, i.e. this script's folder)
#   EDGEPORT             the edgeport command (default "edgeport"); may be several words, e.g.
#                        "/path/to/python -m edgeport"
#   EDGEPORT_SOURCE      model source (default samples.digits.model:build)
#   EDGEPORT_CALIB       calibration data (default samples/digits/calib.npz; empty: none)
#   EDGEPORT_EVAL        evaluation data with labels (default samples/digits/eval.npz; empty: none)
#   EDGEPORT_RECIPE      extra export arguments (default "--quantize int8")
#   EDGEPORT_BUDGETS     budget arguments (default "--max-size 100KB --max-accuracy-drop 0.5
#                        --min-agreement 0.99")
#   EDGEPORT_CHECKS      check arguments (default "--runs 20 --warmup 2")
#   EDGEPORT_OUT         work folder (default app/build/edgeport under the Gradle project)
#   EDGEPORT_MODEL_NAME  model name, i.e. <name>.tflite (default digits)
#   EDGEPORT_WORKDIR     folder edgeport runs in; module:factory sources and relative data
#                        paths are resolved from it (default: the current folder)
#   EDGEPORT_LABELS      labels file to install as labels.txt, one label per line (default for
#                        the digits model: "0".."9"; required for other models)
# Relative ASSETS_DIR, EDGEPORT_OUT and EDGEPORT_LABELS are taken from the current folder, before
# the script changes to EDGEPORT_WORKDIR.
#
# Multi-word values (EDGEPORT, EDGEPORT_RECIPE, EDGEPORT_BUDGETS, EDGEPORT_CHECKS) are split on
# whitespace into an array with `read -ra`: no eval, no globbing, no command substitution, so the
# values are never run as shell code. A single word therefore cannot contain spaces.
#
# Exit codes: 0 installed; 1 a budget was breached (installed files left as they were); 2 bad
# input. Messages start with "edgeport:" and go to stderr, where Gradle shows them.

set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# An absolute path for $1, taken from the current folder.
absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "${PWD}/$1" ;;
    esac
}

fail() {
    echo "edgeport: error: $*" >&2
    exit 2
}

if (( $# > 1 )); then
    fail "usage: $(basename "$0") [ASSETS_DIR]"
fi
assets="$(absolute "${1:-${EDGEPORT_ASSETS:-${script_dir}/app/src/main/assets}}")"
out="$(absolute "${EDGEPORT_OUT:-${script_dir}/app/build/edgeport}")"
name="${EDGEPORT_MODEL_NAME:-digits}"
source_ref="${EDGEPORT_SOURCE:-samples.digits.model:build}"
command_words="${EDGEPORT:-edgeport}"
labels_file=""
if [[ -n "${EDGEPORT_LABELS:-}" ]]; then
    labels_file="$(absolute "$EDGEPORT_LABELS")"
fi

read -ra edgeport_cmd <<< "$command_words"
read -ra recipe_args <<< "${EDGEPORT_RECIPE---quantize int8}"
read -ra budget_args <<< "${EDGEPORT_BUDGETS---max-size 100KB --max-accuracy-drop 0.5 --min-agreement 0.99}"
read -ra check_args <<< "${EDGEPORT_CHECKS---runs 20 --warmup 2}"

# Data files: an empty value leaves the option out.
data_args=()
calib="${EDGEPORT_CALIB-samples/digits/calib.npz}"
eval_data="${EDGEPORT_EVAL-samples/digits/eval.npz}"
if [[ -n "$calib" ]]; then data_args+=(--calib "$calib"); fi
if [[ -n "$eval_data" ]]; then data_args+=(--eval "$eval_data"); fi

# Check what can be checked before spending time on the export.
if (( ${#edgeport_cmd[@]} == 0 )); then
    fail "EDGEPORT is empty"
fi
if ! command -v "${edgeport_cmd[0]}" > /dev/null 2>&1; then
    fail "command not found: ${edgeport_cmd[0]} (set EDGEPORT, or -Pedgeport=... for Gradle)"
fi
if [[ ! "$name" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]]; then
    fail "EDGEPORT_MODEL_NAME is not a plain file name: ${name}"
fi
if [[ -n "$labels_file" && ! -f "$labels_file" ]]; then
    fail "labels file not found: ${labels_file}"
fi
if [[ -z "$labels_file" && "$name" != "digits" ]]; then
    fail "set EDGEPORT_LABELS to the labels file of ${name} (one label per line)"
fi
if [[ -n "${EDGEPORT_WORKDIR:-}" ]]; then
    cd "$EDGEPORT_WORKDIR" 2> /dev/null || fail "cannot enter EDGEPORT_WORKDIR ${EDGEPORT_WORKDIR}"
fi

mkdir -p "$(dirname "$out")"
log="$(mktemp "${TMPDIR:-/tmp}/edgeport-log.XXXXXX")"
staged=()
cleanup() {
    rm -f "$log" ${staged[@]+"${staged[@]}"}
}
trap cleanup EXIT

echo "edgeport: exporting ${name} for Android into ${out}"
status=0
"${edgeport_cmd[@]}" export "$source_ref" --target android \
    ${recipe_args[@]+"${recipe_args[@]}"} \
    ${data_args[@]+"${data_args[@]}"} \
    ${budget_args[@]+"${budget_args[@]}"} \
    ${check_args[@]+"${check_args[@]}"} \
    --out "$out" --quiet 2> "$log" || status=$?

report="${out}/report.json"
case "$status" in
    0)
        cat "$log" >&2
        ;;
    1)
        # edgeport's own lines ("edgeport: budget max_size exceeded on android: ..."), then one
        # summary line. Nothing is installed: the assets keep the last model that passed.
        cat "$log" >&2
        echo "edgeport: budget breached, see ${report}" >&2
        exit 1
        ;;
    *)
        cat "$log" >&2
        if ! grep -q '^edgeport: error: ' "$log"; then
            echo "edgeport: error: export failed with exit code ${status}" >&2
        fi
        exit "$status"
        ;;
esac

artifact="${out}/android/${name}.tflite"
if [[ ! -f "$artifact" ]]; then
    shopt -s nullglob
    found=("${out}"/android/*.tflite)
    fail "${artifact} was not written (is EDGEPORT_MODEL_NAME right? found: ${found[*]:-nothing})"
fi

# Install: each file is first written to a hidden temporary file in the assets folder (same
# folder, so mv is a rename; aapt skips names starting with a dot), then renamed over the old one.
# An interrupted build never leaves a half-written file under the real name.
mkdir -p "$assets"
install_file() {  # install_file FROM NAME: copy FROM (a file, or - for stdin) to assets/NAME
    local tmp="${assets}/.$2.new.$$"
    staged+=("$tmp")
    if [[ "$1" == "-" ]]; then cat > "$tmp"; else cp "$1" "$tmp"; fi
    mv -f "$tmp" "${assets}/$2"
}

install_file "$artifact" "${name}.tflite"
if [[ -n "$labels_file" ]]; then
    install_file "$labels_file" labels.txt
else
    install_file - labels.txt <<< "$(printf '%s\n' 0 1 2 3 4 5 6 7 8 9)"
fi
install_file "$report" "${name}.edgeport-report.json"

echo "edgeport: installed ${assets}/${name}.tflite"
echo "edgeport: labels ${assets}/labels.txt"
echo "edgeport: report ${assets}/${name}.edgeport-report.json"
