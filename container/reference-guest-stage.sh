#!/bin/sh
# Dockerfile stage "reference-guest": build the reference guest that `selfcheck` boots.
#   reference-guest-stage.sh MODE SRC_DIR OUT_DIR
# MODE: auto      build it when SRC_DIR/build.py exists, else bake no guest (with a warning)
#       required  build it, and fail when SRC_DIR/build.py is missing
#       skip      bake no guest
set -eu
mode="$1"; src="$2"; out="$3"
mkdir -p "$out"
case "$mode" in auto|required|skip) ;; *) echo "ERROR: REFERENCE_GUEST must be auto, required or skip, not '$mode'" >&2; exit 1 ;; esac

if [ "$mode" != skip ] && [ -f "$src/build.py" ]; then
    cd "$src"
    python3 build.py --out "$out/reference-guest.qcow2"
    if [ ! -s "$out/reference-guest.qcow2" ]; then
        echo "ERROR: reference-guest/build.py ran but left no $out/reference-guest.qcow2" >&2
        exit 1
    fi
    exit 0
fi
if [ "$mode" = required ]; then
    echo "ERROR: REFERENCE_GUEST=required but reference-guest/build.py is not in the build context" >&2
    exit 1
fi
echo "WARNING: no reference guest baked into the image (REFERENCE_GUEST=$mode); 'selfcheck' will not work" >&2
echo "This image was built without the reference guest (REFERENCE_GUEST=$mode)." >"$out/NO-REFERENCE-GUEST"
