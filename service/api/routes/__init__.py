"""One module per resource; each exposes `router`. service.main.create_app includes those present."""
