#!/usr/bin/env bash
# Xcode "Run Script" build phase: export the model with edgeport, check it against its budgets and
# install the .mlpackage into the app's source tree. A breached budget fails the build.
#
# Call it from the build phase (see README.md in this folder), e.g.
#     EDGEPORT="${SRCROOT}/../.venv/bin/edgeport" "${SRCROOT}/../samples/ios/edgeport_build_phase.sh"
#
# Why the source tree: Xcode compiles .mlpackage/.mlmodel files listed in "Compile Sources" into
# .mlmodelc bundles (and generates a Swift class for them). It only does so for files that belong
# to the app target, so the package must live in the project folder, not in DerivedData. This
# phase therefore has to run before "Compile Sources".
#
# Environment (all optional; Xcode sets SRCROOT, CONFIGURATION, DERIVED_FILE_DIR and
# IPHONEOS_DEPLOYMENT_TARGET):
#   SRCROOT              project folder (default: the current folder)
#   CONFIGURATION        Debug uses fewer latency runs to keep builds fast (default Release)
#   IPHONEOS_DEPLOYMENT_TARGET  picks --ios-target (iOS15..iOS18) unless EDGEPORT_RECIPE has one
#   EDGEPORT             the edgeport command (default "edgeport"); may be several words, e.g.
#                        "/path/to/python -m edgeport"
#   EDGEPORT_SOURCE      model source (default samples.digits.model:build)
#   EDGEPORT_CALIB       calibration data (default samples/digits/calib.npz; empty: none)
#   EDGEPORT_EVAL        evaluation data with labels (default samples/digits/eval.npz; empty: none)
#   EDGEPORT_RECIPE      extra export arguments (default "--quantize dynamic-int8")
#   EDGEPORT_BUDGETS     budget arguments (default "--max-size 100KB --max-accuracy-drop 0.5
#                        --min-agreement 0.99")
#   EDGEPORT_CHECKS      check arguments (default "--runs 20 --warmup 2" for Debug, else none)
#   EDGEPORT_OUT         work folder (default "${DERIVED_FILE_DIR:-${TMPDIR:-/tmp}}/edgeport")
#   EDGEPORT_MODEL_NAME  model name, i.e. <name>.mlpackage (default digits)
#   EDGEPORT_APP_DIR     app folder under SRCROOT; the model goes to its Models/ (default App)
#   EDGEPORT_WORKDIR     folder edgeport runs in; module:factory sources and relative data
#                        paths are resolved from it (default: the current folder)
#
# Multi-word values (EDGEPORT, EDGEPORT_RECIPE, EDGEPORT_BUDGETS, EDGEPORT_CHECKS) are split on
# whitespace into an array with `read -ra`: no eval, no globbing, no command substitution, so the
# values are never run as shell code. The price: a single word cannot contain spaces (put the
# venv at a path without spaces, or point EDGEPORT at a wrapper script).
#
# Exit codes: 0 installed; 1 a budget was breached (previous model left in place); 2 bad input.
# Lines starting with "error:" are shown by Xcode as build errors.

set -euo pipefail

srcroot="${SRCROOT:-$PWD}"
configuration="${CONFIGURATION:-Release}"
name="${EDGEPORT_MODEL_NAME:-digits}"
source_ref="${EDGEPORT_SOURCE:-samples.digits.model:build}"
out="${EDGEPORT_OUT:-${DERIVED_FILE_DIR:-${TMPDIR:-/tmp}}/edgeport}"
dest_dir="${srcroot}/${EDGEPORT_APP_DIR:-App}/Models"
command_words="${EDGEPORT:-edgeport}"

if [[ "$configuration" == "Debug" ]]; then
    default_checks="--runs 20 --warmup 2"
else
    default_checks=""
fi

# Arrays are expanded as ${a[@]+"${a[@]}"} throughout: macOS's /bin/bash 3.2 treats an empty
# array as unset under `set -u`.
read -ra edgeport_cmd <<< "$command_words"
read -ra recipe_args <<< "${EDGEPORT_RECIPE---quantize dynamic-int8}"
read -ra budget_args <<< "${EDGEPORT_BUDGETS---max-size 100KB --max-accuracy-drop 0.5 --min-agreement 0.99}"
read -ra check_args <<< "${EDGEPORT_CHECKS-$default_checks}"

# Data files: an empty value leaves the option out.
data_args=()
calib="${EDGEPORT_CALIB-samples/digits/calib.npz}"
eval_data="${EDGEPORT_EVAL-samples/digits/eval.npz}"
if [[ -n "$calib" ]]; then data_args+=(--calib "$calib"); fi
if [[ -n "$eval_data" ]]; then data_args+=(--eval "$eval_data"); fi

# Core ML spec version from the app's deployment target, unless the recipe names one. ML programs
# need iOS 15; iOS18 is the newest spec edgeport knows and also runs on later versions.
if [[ -n "${IPHONEOS_DEPLOYMENT_TARGET:-}" && " ${EDGEPORT_RECIPE:-} " != *" --ios-target"* ]]; then
    major="${IPHONEOS_DEPLOYMENT_TARGET%%.*}"
    if [[ "$major" =~ ^[0-9]+$ ]]; then
        if (( major < 15 )); then
            echo "warning: edgeport: deployment target iOS ${IPHONEOS_DEPLOYMENT_TARGET} is older than iOS 15;" \
                "the model will only load on iOS 15 and later" >&2
            major=15
        elif (( major > 18 )); then
            major=18
        fi
        recipe_args+=(--ios-target "iOS${major}")
    fi
fi

if [[ -z "${command_words//[[:space:]]/}" ]]; then
    echo "error: edgeport: EDGEPORT is empty" >&2
    exit 2
fi
if [[ -n "${EDGEPORT_WORKDIR:-}" ]]; then
    cd "$EDGEPORT_WORKDIR" || { echo "error: edgeport: cannot enter ${EDGEPORT_WORKDIR}" >&2; exit 2; }
fi

# edgeport's stderr is kept in a file so its messages can be rewritten as Xcode errors.
mkdir -p "$(dirname "$out")"
log="$(mktemp "${TMPDIR:-/tmp}/edgeport-log.XXXXXX")"
staged=""
cleanup() {
    rm -f "$log"
    if [[ -n "$staged" ]]; then rm -rf "$staged"; fi
}
trap cleanup EXIT

echo "edgeport: exporting ${name} for iOS (${configuration}) into ${out}"
status=0
"${edgeport_cmd[@]}" export "$source_ref" --target ios \
    ${recipe_args[@]+"${recipe_args[@]}"} \
    ${data_args[@]+"${data_args[@]}"} \
    ${budget_args[@]+"${budget_args[@]}"} \
    ${check_args[@]+"${check_args[@]}"} \
    --quiet --out "$out" 2> "$log" || status=$?

report="${out}/report.json"
case "$status" in
    0)
        cat "$log" >&2
        ;;
    1)
        # Each "edgeport: budget ..." line becomes an Xcode error; the installed model is kept.
        while IFS= read -r line || [[ -n "$line" ]]; do
            if [[ "$line" == "edgeport: budget"* ]]; then
                echo "error: ${line}" >&2
            else
                echo "$line" >&2
            fi
        done < "$log"
        echo "error: edgeport: budget breached, see ${report}" >&2
        exit 1
        ;;
    *)
        reported=0
        while IFS= read -r line || [[ -n "$line" ]]; do
            if [[ "$line" == "edgeport: error: "* ]]; then
                echo "error: edgeport: ${line#edgeport: error: }" >&2
                reported=1
            else
                echo "$line" >&2
            fi
        done < "$log"
        if [[ "$reported" -eq 0 ]]; then
            echo "error: edgeport: export failed with exit code ${status}" >&2
        fi
        exit "$status"
        ;;
esac

artifact="${out}/ios/${name}.mlpackage"
if [[ ! -d "$artifact" ]]; then
    echo "error: edgeport: ${artifact} was not written (is EDGEPORT_MODEL_NAME right?)" >&2
    exit 2
fi

# Install: copy to a hidden temporary sibling (same folder, so mv is a rename), move the old
# package aside, rename the new one into place, then delete the old one. A build interrupted
# half-way never leaves a half-copied package under the real name.
mkdir -p "$dest_dir"
target="${dest_dir}/${name}.mlpackage"
staged="${dest_dir}/.${name}.mlpackage.new.$$"
old="${dest_dir}/.${name}.mlpackage.old.$$"
rm -rf "$staged" "$old"
cp -R "$artifact" "$staged"
if [[ -e "$target" ]]; then
    mv "$target" "$old"
fi
mv "$staged" "$target"
staged=""
rm -rf "$old"

report_copy="${dest_dir}/${name}.edgeport-report.json"
cp "$report" "${report_copy}.new.$$"
mv -f "${report_copy}.new.$$" "$report_copy"

echo "edgeport: installed ${target}"
echo "edgeport: report ${report_copy}"
