"""The matrix file's JSON Schema (draft 2020-12): what keys exist and what they hold.

A matrix file (YAML) lists the cases of a fleet run::

    version: 1
    parallelism: 2                       # at most this many cases at once (Kubernetes, GitHub)
    defaults:                            # under every case (a case's own keys win)
      timeout: 900                       # --timeout-seconds
      flags: [--snapshot]                # run flags put before each case's own
      runner: [self-hosted, linux, kvm]  # GitHub runner labels
    cases:
      - name: win7-contract
        image: images/win7.qcow2         # relative to the matrix file's folder
        flags: [--enable-virtio-snd, --virtio-snd-audio-backend, wav]
      - name: reference
        selfcheck: true                  # the reference guest baked into the image
    products:                            # a case for each image x flag set
      - prefix: ref                      # names: ref-<image key>-<flag set key>
        images:
          guest: {selfcheck: true}
        flag_sets:
          contract: []
          transitional: [--virtio-transitional]

Checks that a schema cannot express (names unique once products are expanded, flags the harness
accepts) are in ``harness.fleet.expand``.
"""

from __future__ import annotations

from typing import Any

VERSION = 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"  # a folder, an artifact and a Kubernetes-friendly name
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
DEFAULT_RUNNER = ("self-hosted", "linux", "kvm")

_FLAGS = {
    "type": "array",
    "items": {"type": "string"},
    "description": "harness run flags, as on the command line (one array item a word); QEMU arguments after '--'",
}
_TIMEOUT = {
    "type": "number",
    "exclusiveMinimum": 0,
    "description": "seconds without a RESULT line before the run gives up (--timeout-seconds); default: the "
                   "harness's (600, 300 for selfcheck)",
}
_RUNNER = {
    "type": "array",
    "items": {"type": "string", "pattern": r"^\S+$"},
    "minItems": 1,
    "description": f"the labels of the GitHub runner a case runs on (default: {list(DEFAULT_RUNNER)})",
}
_HARNESS_IMAGE = {
    "type": "string",
    "minLength": 1,
    "description": "the Docker image of the harness (default: aero-win7-docker's, $AERO_WIN7_IMAGE or "
                   "aero-win7-harness:latest)",
}
_SELFCHECK = {
    "type": "boolean",
    "description": "true: run the reference guest baked into the harness image instead of an image",
}
_IMAGE = {
    "type": "string",
    "minLength": 1,
    "description": "the disk image; a relative path is relative to the matrix file's folder",
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://aero-win7-harness/matrix.schema.json",
    "title": "aero-win7-harness matrix",
    "type": "object",
    "additionalProperties": False,
    "required": ["version"],
    "anyOf": [{"required": ["cases"]}, {"required": ["products"]}],
    "properties": {
        "version": {"const": VERSION, "description": "the format of this file"},
        "parallelism": {"type": "integer", "minimum": 1,
                        "description": "how many cases run at once in a Kubernetes Job or a GitHub job matrix "
                                       "(default 1)"},
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "description": "keys every case gets unless it sets them; flags are put before the case's own",
            "properties": {"flags": _FLAGS, "timeout": _TIMEOUT, "runner": _RUNNER, "harness_image": _HARNESS_IMAGE},
        },
        "cases": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/case"}},
        "products": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/product"}},
    },
    "$defs": {
        "case": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN,
                         "description": "unique; letters, digits, '.', '_', '-', at most 63 characters"},
                "image": _IMAGE,
                "selfcheck": _SELFCHECK,
                "flags": _FLAGS,
                "timeout": _TIMEOUT,
                "runner": _RUNNER,
                "harness_image": _HARNESS_IMAGE,
            },
            "if": {"required": ["selfcheck"], "properties": {"selfcheck": {"const": True}}},
            "then": {"not": {"required": ["image"]}},
            "else": {"required": ["image"]},
        },
        "product": {
            "type": "object",
            "additionalProperties": False,
            "required": ["images", "flag_sets"],
            "description": "one case for each pair of an image and a flag set, named "
                           "[<prefix>-]<image key>-<flag set key>",
            "properties": {
                "prefix": {"type": "string", "pattern": KEY_PATTERN},
                "images": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": KEY_PATTERN},
                    "additionalProperties": {
                        "oneOf": [
                            _IMAGE,
                            {"type": "object", "additionalProperties": False, "required": ["selfcheck"],
                             "properties": {"selfcheck": {"const": True}}},
                        ],
                    },
                },
                "flag_sets": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": KEY_PATTERN},
                    "additionalProperties": _FLAGS,
                },
                "flags": _FLAGS,
                "timeout": _TIMEOUT,
                "runner": _RUNNER,
                "harness_image": _HARNESS_IMAGE,
            },
        },
    },
}
