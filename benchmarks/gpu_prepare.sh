#!/usr/bin/env bash
# Run here, where PyPI is reachable, before a device call of benchmarks/gpu_paper_sprites.sh. It fetches the
# wheels of benchmarks/gpu_wheels.txt for the device's CPython 3.12 on x86_64 into .whl/, copies the LPC
# sheets of the data mirror into .device-mirror/lpc-sprites (the device sees nothing beside the checkout),
# and prints what the call carries: both folders are ignored by git and go in the call's `carry`; with the
# working tree they must stay under the device tool's 64 MiB.
#
#   bash benchmarks/gpu_prepare.sh [MIRROR]     # MIRROR: the data mirror, default ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
mirror=${1:-../shared/data}
wheels=.whl
data=.device-mirror
if [[ ! -d $mirror/lpc-sprites ]]; then
  echo "error: $mirror/lpc-sprites is not a folder: pass the data mirror that holds it (default ../shared/data)" >&2
  exit 1
fi

# The device tool's pip line (its README): pip matches each manylinux tag exactly, so all are named.
target=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
  --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mapfile -t pins < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' benchmarks/gpu_wheels.txt | grep -v '^$')
rm -rf "$wheels" && mkdir "$wheels"
built=$(mktemp -d)
trap 'rm -rf "$built"' EXIT
for pin in "${pins[@]}"; do
  if ! python3 -m pip download -q --no-deps "${target[@]}" -d "$wheels" "$pin" 2>"$built/error"; then
    # No wheel on PyPI (connection_pool publishes its source only): build one here, which must be pure Python
    # to run on the device's interpreter.
    python3 -m pip wheel -q --no-deps --no-binary=:all: -w "$built" "$pin" || { cat "$built/error" >&2; exit 1; }
    wheel=$(ls "$built"/*.whl)
    if [[ $wheel != *-py3-none-any.whl ]]; then
      echo "error: $pin has no wheel for CPython 3.12 on PyPI, and the one built here, $(basename "$wheel"), is not pure Python" >&2
      exit 1
    fi
    mv "$wheel" "$wheels/"
  fi
done
count=$(ls "$wheels"/*.whl | wc -l)
if ((count != ${#pins[@]})); then
  echo "error: $count wheels in $wheels/ for ${#pins[@]} pins of benchmarks/gpu_wheels.txt" >&2
  exit 1
fi

rm -rf "$data" && mkdir "$data"
cp -r "$mirror/lpc-sprites" "$data/"
chmod -R u+w "$data"  # the shared mirror is read-only; its copy must stay removable

echo "wheels ($wheels/, bytes):"
du -b "$wheels"/*.whl | sort -rn | sed "s|$wheels/||"
bytes() { du -cb "$@" | tail -1 | cut -f1; }
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb | tail -1 | cut -f1)
carried=$(bytes "$wheels" "$data")
total=$((tracked + ${untracked:-0} + carried))
echo "travels: $wheels $(bytes "$wheels") + $data $(bytes "$data") + tracked files $tracked + untracked ${untracked:-0}" \
  "= $total bytes ($((total / 1048576)) MiB of the device tool's 64)"
if ((total > 64 * 1048576)); then
  echo "error: over the device tool's 64 MiB" >&2
  exit 1
fi
