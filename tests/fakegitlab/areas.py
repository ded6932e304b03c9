"""The API areas the fake serves, in routing order. A new area is one module with an `Area`
subclass (fakegitlab/base.py), added to this list."""
from __future__ import annotations

from .base import Area
from .deployments import Deployments
from .environments import Environments
from .issues import Issues
from .mlflow import MLflow
from .notes import Notes
from .packages import Packages
from .pipelines import Pipelines
from .projects import Projects
from .protected_environments import ProtectedEnvironments
from .registry_auth import RegistryAuth
from .schedules import Schedules
from .uploads import Uploads
from .variables import Variables

AREAS: list[type[Area]] = [
    Projects,
    Packages,
    Notes,
    Uploads,
    Environments,
    Deployments,
    ProtectedEnvironments,
    Variables,
    Schedules,
    Pipelines,
    Issues,
    MLflow,
    RegistryAuth,
]
