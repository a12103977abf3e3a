#!/usr/bin/env bash
# Formats every C++ source of the tree with the checked-in .clang-format.
# --check: change nothing, list unformatted files and fail if there are any.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tracked files and new ones not yet added (ignored build trees excluded).
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp' '*.h' '*.cc')
if [[ "${1:-}" == "--check" ]]; then
    bad=0
    for f in "${files[@]}"; do
        if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
            echo "not formatted: $f (run tools/format.sh)"
            bad=1
        fi
    done
    ((bad == 0)) && echo "format: ${#files[@]} files clean"
    exit $bad
fi
clang-format -i "${files[@]}"
