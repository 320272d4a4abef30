"""Every request and response body of the API, one module per resource, named by role
(`XCreate` comes in, `XPublic` goes out, `XList` is many of them). Schemas that existed before
these names keep theirs (`RefineRequest`, `SimulateRequest`, ...): they are the OpenAPI
document's component names, which generated clients depend on.
"""

from service.api.schemas.datasets import MAX_SIMULATE_COUNT, DatasetList, DatasetPublic, SimulateRequest
from service.api.schemas.health import Liveness, Readiness
from service.api.schemas.jobs import (
    RefineJobCreate,
    RefineJobList,
    RefineJobPublic,
    RefineProgress,
    TrainJobCreate,
    TrainJobList,
    TrainJobPublic,
    TrainProgress,
)
from service.api.schemas.models import Activation, ModelList
from service.api.schemas.problem import Problem
from service.api.schemas.refine import RefinedImage, RefineImageIn, RefineRequest, RefineResponse

__all__ = [
    "MAX_SIMULATE_COUNT",
    "Activation",
    "DatasetList",
    "DatasetPublic",
    "Liveness",
    "ModelList",
    "Problem",
    "Readiness",
    "RefineImageIn",
    "RefineJobCreate",
    "RefineJobList",
    "RefineJobPublic",
    "RefineProgress",
    "RefineRequest",
    "RefineResponse",
    "RefinedImage",
    "SimulateRequest",
    "TrainJobCreate",
    "TrainJobList",
    "TrainJobPublic",
    "TrainProgress",
]
