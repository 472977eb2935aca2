#!/usr/bin/env python3
"""Check crates/api/openapi.yaml.

1. It is a valid OpenAPI document (openapi-spec-validator).
2. Its `paths` are exactly the routes of crates/api/src/routes.rs,
   crates/api/src/health.rs and crates/dashboard/src/lib.rs (the
   `.route("...")` calls; axum 0.8 writes parameters as `{id}` like OpenAPI).

Exits 1 on any problem, and when PyYAML or openapi-spec-validator is
missing: run it with the venv of scripts/dev-venv.sh (scripts/test.sh does),
whose versions scripts/requirements-dev.txt pins.

Usage: scripts/check-openapi.py [repo-root]
"""

import pathlib
import re
import sys

try:
    import yaml
except ImportError:
    sys.exit("check-openapi: PyYAML is required; run me with the venv of scripts/dev-venv.sh")

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
spec_path = root / "crates/api/openapi.yaml"
routes_paths = [
    root / "crates/api/src/routes.rs",
    root / "crates/api/src/health.rs",
    root / "crates/dashboard/src/lib.rs",  # the web dashboard, merged into the API's router
]

failed = False

try:
    spec = yaml.safe_load(spec_path.read_text())
except (OSError, yaml.YAMLError) as e:
    sys.exit(f"check-openapi: cannot load {spec_path}: {e}")
if not isinstance(spec, dict):
    sys.exit(f"check-openapi: {spec_path} is not a YAML mapping")

# 1. Validate against the OpenAPI specification.
try:
    from openapi_spec_validator import validate
except ImportError:
    sys.exit("check-openapi: openapi-spec-validator is required; run me with the venv of scripts/dev-venv.sh")
try:
    validate(spec)
    print(f"check-openapi: {spec_path.relative_to(root)} is a valid OpenAPI {spec.get('openapi')} document")
except Exception as e:  # the validator's error types vary between versions
    print(f"check-openapi: invalid OpenAPI document: {e}")
    failed = True

# 2. Compare the documented paths with the router's.
routes = set()
for routes_path in routes_paths:
    source = routes_path.read_text().split("#[cfg(test)]")[0]  # the router, not its tests
    found = set(re.findall(r'\.route\(\s*"([^"]+)"', source))
    if not found:
        print(f"check-openapi: no .route(\"...\") calls found in {routes_path}")
        failed = True
    routes |= found
documented = set((spec.get("paths") or {}).keys())

for p in sorted(routes - documented):
    print(f"check-openapi: route {p} (routes.rs, health.rs) is missing from openapi.yaml paths")
    failed = True
for p in sorted(documented - routes):
    print(f"check-openapi: path {p} (openapi.yaml) is not a route in routes.rs or health.rs")
    failed = True
if routes and routes == documented:
    print(f"check-openapi: the {len(routes)} routes of routes.rs and health.rs match the documented paths")

sys.exit(1 if failed else 0)
