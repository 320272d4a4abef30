"""The HTTP layer: routes (one module per resource), dependencies, schemas, error handlers."""
