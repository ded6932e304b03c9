"""The setup step: prepare the GitLab project for modelci (idempotent; a dry run only reads).

Builds the plan (protected production environment and its deployers, approval rules, project settings,
CI/CD variables, the drift monitor's schedule) from the settings and applies it through modelci.setup.
"""
from __future__ import annotations

from .. import gitlab_api, log
from ..errors import ModelCIError
from ..settings.setup import SetupSettings
from ..setup import Plan, parse_variable, parse_who, run_setup
from . import Result


def run(s: SetupSettings) -> Result:
    if s.approvals < 0:
        raise ModelCIError("--approvals: must be 0 or more")
    if len(s.cron.split()) != 5:
        raise ModelCIError(f"--cron {s.cron!r}: expected 5 fields (minute hour day month weekday), "
                           f"e.g. '0 6 * * *'")
    plan = Plan(environment=s.environment, external_url=s.external_url or None,
                deployers=[parse_who(w, "--deployer") for w in s.deployers] or Plan().deployers,
                approvals=s.approvals,
                approvers=[parse_who(w, "--approver") for w in s.approvers] or Plan().approvers,
                variables=[parse_variable(v, s.variable_values, masked=s.masked, protected=s.protected,
                                          scope=s.variable_scope) for v in s.variables],
                schedule=s.schedule, cron=s.cron, cron_timezone=s.cron_timezone,
                schedule_ref=s.schedule_ref)
    keys = [v.key for v in plan.variables]
    if len(set(keys)) != len(keys):
        raise ModelCIError("--variable: the same key is given twice; give each variable once")
    if s.token is not None and not s.token[1]:
        raise ModelCIError(f"--token-env {s.token[0]}: the environment variable {s.token[0]} is empty or unset; "
                           "export the token in it")
    client = gitlab_api.from_env(scope=gitlab_api.SCOPE_API, url=s.api_url, project=s.project, token=s.token)
    with log.section("modelci_setup", "GitLab project setup" + (" (dry run)" if s.dry_run else "")):
        result = run_setup(client, plan, dry_run=s.dry_run)
    log.info(f"setup: {result['summary']}")
    return Result(result)
