"""The model registry: the contract between the trainer (publishes) and the service (serves).

Imports neither torch nor fastapi: both sides depend on it, it depends on neither.
"""

from models.card import IOSpec, ModelCard
from models.registry import ModelNotFound, Registry, RegistryError

__all__ = ["IOSpec", "ModelCard", "ModelNotFound", "Registry", "RegistryError"]
